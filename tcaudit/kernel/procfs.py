"""What /proc says about a process, read the same way everywhere.

A process name (``comm``) is any 15 bytes its owner chose with prctl(PR_SET_NAME): read
as UTF-8 with the bytes that are not kept apart as surrogates, so reading never fails
on them and two names never collapse into one (output/sanitize.py shows them as
``\\xNN``).
"""

from __future__ import annotations

import os


def comm_of(pid: int | str, proc: str = "/proc") -> str | None:
    """The process's name, or None when it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="surrogateescape") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def exe_of(pid: int | str, proc: str = "/proc") -> str | None:
    """The basename of the process's executable (what a comm alone cannot prove: anyone
    can set their comm), or None when it is gone or unreadable."""
    try:
        target = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return None
    return os.path.basename(target.removesuffix(" (deleted)")) or None
