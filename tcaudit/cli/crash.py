"""The crash handler's file: what a bug report needs, written where only root reads it.

An unexpected exception (exit 70) leaves one file with tcaudit's version, Python's and
the kernel's, the command line and the traceback — and nothing else: no environment
variable and no configuration value (an API key in the agent's environment must never
end up in a file someone attaches to a ticket). The file goes in a directory owned by
the user tcaudit runs as and closed to everyone else (made 0700 when missing; one that
is not is never written to), opened with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600.
pre-commit's error handler is the model: one line on the terminal naming the file.
"""

from __future__ import annotations

import os
import platform
import stat
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from tcaudit import __version__

ROOT_DIR = "/var/tmp/tcaudit"


def crash_dir() -> Path:
    """``TCAUDIT_CRASH_DIR``, else /var/tmp/tcaudit for root (kept across reboots, like
    the node it describes), else ~/.cache/tcaudit for a user (diff and merge run so)."""
    if os.environ.get("TCAUDIT_CRASH_DIR"):
        return Path(os.environ["TCAUDIT_CRASH_DIR"])
    if os.geteuid() == 0:
        return Path(ROOT_DIR)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tcaudit"


def _private(directory: Path) -> bool:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


def write_crash(err: BaseException, argv: Sequence[str]) -> Path | None:
    """The crash file's path, or None when no private place could be written."""
    directory = crash_dir()
    if not _private(directory):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"crash-{stamp}-{os.getpid()}.txt"
    text = "".join(
        [
            f"tcaudit {__version__}\n",
            f"python {platform.python_version()} ({sys.executable})\n",
            f"kernel {platform.release()}\n",
            f"command: tcaudit {' '.join(argv)}\n",
            "\n",
            *traceback.format_exception(type(err), err, err.__traceback__),
        ]
    )
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
        out.write(text)
    return path
