"""Files tcaudit trusts to decide what it leaves out or lets run: its own state records.

The probe's observer records (observers.py) and the record of the namespaces tcaudit
made (made.py) are believed only from a real directory owned by root or by the user
tcaudit runs as, that nobody else can write to, and from regular files in it with the
same owner and the same closed mode, opened without following a symlink (and without
blocking on a FIFO), at most ``limit`` bytes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path


def closed_to_others(st: os.stat_result) -> bool:
    """Owned by root or this user, and writable by neither group nor others."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def trusted_directory_stat(directory: Path) -> os.stat_result | None:
    """The directory's lstat when it is one to trust, else None."""
    try:
        st = os.lstat(directory)
    except OSError:
        return None
    return st if stat.S_ISDIR(st.st_mode) and closed_to_others(st) else None


def trusted_directory(directory: Path) -> bool:
    """A real directory, owned by root or this user, that nobody else can write to."""
    return trusted_directory_stat(directory) is not None


def read_trusted_json(path: Path, owner: int, limit: int) -> object | None:
    """The JSON of a file owned by ``owner`` and closed to others, or None when it is
    missing, not a regular file, too large, not trusted or not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != owner or not closed_to_others(st):
            return None
        if st.st_size > limit:
            return None
        loaded: object = json.loads(os.read(fd, limit + 1))
        return loaded
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
