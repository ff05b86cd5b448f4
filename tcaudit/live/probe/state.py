"""The probe's state file, so `tcaudit probe --cleanup` can remove after a crash or a
SIGKILL exactly the observers a probe added, and nothing else.

A running probe records every observer (namespace, interface, hook, pref, handle, name)
BEFORE adding it, with its pid and that process's start time: a file whose process is
still running is left alone, and a reused pid is told apart by its start time. Clean-up
deletes a recorded observer only if it is still there with the recorded pref, handle and
name (tcaudit_probe_...); what it cannot remove yet stays in the file for a retry.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tcaudit.errors import EnvironmentProblem
from tcaudit.inventory.namespaces import discover
from tcaudit.inventory.observers import state_dir
from tcaudit.inventory.trusted_files import trusted_directory
from tcaudit.kernel import nsfs
from tcaudit.kernel.abi import CLSACT_PARENT
from tcaudit.kernel.rtnl import Netlink
from tcaudit.live.probe.naming import PROBE_PREFIX
from tcaudit.model import CleanupReport


class ProbeError(EnvironmentProblem):
    """The kernel refused a change the probe needs (exit 3), with what to do."""


@dataclass
class StateFile:
    """The observers one running probe has added or is adding, rewritten (atomically)
    on every change."""

    path: Path
    records: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path) -> StateFile:
        """A new state file in ``directory`` (made 0700 when missing), which must be one
        `recommend` trusts: otherwise the records could not be told from forgeries."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ProbeError(
                f"cannot create {directory} for the probe's state file: "
                f"{err.strerror} (set TCAUDIT_PROBE_STATE_DIR)"
            ) from None
        if not trusted_directory(directory):
            raise ProbeError(
                f"probe state directory {directory} is not a directory owned by root (or "
                "this user) and closed to others: fix it (chmod 700) or set "
                "TCAUDIT_PROBE_STATE_DIR"
            )
        return cls(directory / f"{os.getpid()}-{time.time_ns()}.json")

    def add(self, record: dict[str, object]) -> None:
        self.records.append(record)
        self._write()

    def remove(self, record: dict[str, object]) -> None:
        self.records.remove(record)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        doc = {"pid": os.getpid(), "started": _start_time(os.getpid()), "observers": self.records}
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(doc))
            tmp.replace(self.path)
        except OSError as err:
            raise ProbeError(
                f"cannot write the probe's state file {self.path}: "
                f"{err.strerror} (set TCAUDIT_PROBE_STATE_DIR)"
            ) from None

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _netns_path(inode: int, fallback: str) -> str | None:
    for ns in discover():
        if ns.id == inode:
            return ns.path
    return fallback if Path(fallback).exists() else None


def delete_ours(nl: Netlink, record: dict[str, object]) -> bool:
    """Delete the observer a record names, if it is still there AND still ours."""
    ifindex, pref, handle = (
        int(str(record["ifindex"])),
        int(str(record["pref"])),
        int(str(record["handle"])),
    )
    parent = CLSACT_PARENT[str(record["hook"])]
    for f in nl.filters(ifindex, parent):
        if (
            f.pref == pref
            and f.handle == handle
            and f.kind == "bpf"
            and f.bpf is not None
            and f.bpf.name == record["name"]
            and str(record["name"]).startswith(PROBE_PREFIX)
            # the very program the probe attached (older records carry no id)
            and record.get("prog_id", f.bpf.prog_id) == f.bpf.prog_id
        ):
            nl.delete_filter(
                ifindex, parent, pref=pref, handle=handle, protocol=f.protocol, kind="bpf"
            )
            return True
    return False


def cleanup(directory: Path | None = None) -> CleanupReport:
    """Remove the observers that crashed or killed probes left behind, and nothing else."""
    directory = directory or state_dir()
    removed: list[str] = []
    gone: list[str] = []
    active: list[str] = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            state = json.loads(path.read_text())
            pid = int(state.get("pid", 0))
            records = list(state.get("observers", []))
        except (OSError, ValueError, AttributeError, TypeError):
            gone.append(f"{path.name}: not a probe state file, left alone")
            continue
        started = state.get("started")
        if pid and pid != os.getpid() and started is not None and _start_time(pid) == started:
            active.append(f"{path.name} (probe pid {pid} still running)")
            continue
        keep = []
        for record in records:
            try:
                what = (
                    f"{record['name']} on {record['interface']} {record['hook']} "
                    f"pref {record['pref']} handle 0x{int(record['handle']):x} "
                    f"in {record['netns_label']}"
                )
                ns_path = _netns_path(int(record["netns_inode"]), str(record["netns_path"]))
            except (KeyError, TypeError, ValueError):
                gone.append(f"{path.name}: a malformed record, skipped")
                continue
            if ns_path is None:
                gone.append(what + " (namespace gone)")
                continue
            try:
                fd = nsfs.open_netns(ns_path)
            except OSError:
                gone.append(what + " (namespace gone)")
                continue
            try:
                with Netlink(fd) as nl:
                    (removed if delete_ours(nl, record) else gone).append(what)
            except OSError as err:
                keep.append(record)
                gone.append(f"{what}: could not remove it ({err.strerror}); kept for a retry")
            finally:
                os.close(fd)
        if keep:  # the dead probe's pid and start time stay: it still counts as dead
            path.write_text(json.dumps({"pid": pid, "started": started, "observers": keep}))
        else:
            path.unlink()
    return CleanupReport(tuple(removed), tuple(gone), tuple(active))

