"""Which network namespaces tcaudit made itself (the lab, selftest, the tests' sandboxes).

`probe --generate` sends UDP between every address pair of the selected namespaces;
on a live node that is traffic between real pods, so it is allowed only in namespaces
tcaudit created, unless the user opts in (`--generate-on-node`). A name prefix proves
nothing (anyone can call a namespace `tcaudit-lab-...`), so the sandbox records every
namespace it creates by its nsfs inode AND its netns cookie (an inode number is reused
once a namespace is gone, a cookie never within a boot) in a directory only root can
write, and removes the record when it deletes the namespace. A record is believed only
from a directory and a file owned by root (or this user) and closed to others, and only
when the namespace's cookie still matches.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Final

from tcaudit.inventory.trusted_files import read_trusted_json, trusted_directory_stat
from tcaudit.kernel import nsfs
from tcaudit.model import Netns

MADE_DIR: Final = "/run/tcaudit/made"


def made_dir() -> Path:
    """Where the records live (TCAUDIT_MADE_DIR overrides)."""
    return Path(os.environ.get("TCAUDIT_MADE_DIR", MADE_DIR))


def record(name: str, path: str) -> None:
    """Note a namespace this process just created (before anything else is put in it)."""
    directory = made_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(path)
    fd = nsfs.open_netns(path)
    try:
        cookie = nsfs.netns_cookie(fd)
    finally:
        os.close(fd)
    doc = {"name": name, "inode": st.st_ino, "cookie": cookie, "pid": os.getpid(),
           "created": time.time()}
    target = directory / f"{st.st_ino}.json"
    tmp = directory / f".{st.st_ino}.{os.getpid()}.tmp"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(out, "w") as handle:
        handle.write(json.dumps(doc))
    tmp.replace(target)


def forget(path: str) -> None:
    """Drop the record of a namespace about to be deleted."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return
    with contextlib.suppress(FileNotFoundError):
        (made_dir() / f"{inode}.json").unlink()


def made_by_tcaudit(netns: Netns) -> bool:
    """True when a trusted record names this very namespace (inode and cookie)."""
    directory = made_dir()
    dst = trusted_directory_stat(directory)
    if dst is None:
        return False
    doc = read_trusted_json(directory / f"{netns.id}.json", dst.st_uid, 1 << 16)
    if not isinstance(doc, dict) or doc.get("inode") != netns.id:
        return False
    try:
        ns_fd = nsfs.open_netns(netns.path)
    except OSError:
        return False
    try:
        cookie = nsfs.netns_cookie(ns_fd)
    finally:
        os.close(ns_fd)
    return cookie is None or doc.get("cookie") == cookie
