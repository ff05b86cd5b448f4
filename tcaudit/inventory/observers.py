"""tcaudit's own probe observers, known by what the probe recorded, never by a name.

A running probe records every observer it adds (namespace, interface, hook, pref,
handle, program id and tag) in a state file BEFORE adding it (live/probe/state.py writes
them). An observer only counts packets and returns TC_ACT_UNSPEC, so the recommendation
leaves it out of the blind-spot analysis — and that makes the record a thing to trust
carefully: anyone who could write one could hide a chain-ending filter from
`recommend`. So a record is believed only when

- the state directory is a real directory (not a symlink), owned by root or by the user
  tcaudit runs as, and writable by nobody else (group and others have no write bit);
- the file is a regular file opened with O_NOFOLLOW, owned by that same user, not
  writable by group or others, and at most ``MAX_STATE_BYTES``;
- and the entry on the hook matches it in everything: namespace inode, interface index,
  hook, pref, handle, program id AND program tag (a program id is reused only after the
  observer is gone, and the tag is the hash of the observer's code).

A filter named ``tcaudit_probe_...`` without such a record is a filter like any other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from tcaudit.inventory.trusted_files import (
    read_trusted_json,
    trusted_directory_stat,
)
from tcaudit.model import Entry, Hook, Interface, Netns, Scan, map_entries

STATE_DIR: Final = "/run/tcaudit/probe"
MAX_STATE_BYTES: Final = 1 << 20


def state_dir() -> Path:
    """Where running probes record their observers (TCAUDIT_PROBE_STATE_DIR overrides);
    the probe writes there and the recommendation reads there."""
    return Path(os.environ.get("TCAUDIT_PROBE_STATE_DIR", STATE_DIR))


@dataclass(frozen=True)
class ObserverKey:
    netns_inode: int
    ifindex: int
    hook: str
    pref: int
    handle: int
    prog_id: int
    tag: str


@dataclass(frozen=True)
class Observers:
    keys: frozenset[ObserverKey]
    warnings: tuple[str, ...] = ()


def _records(path: Path, owner: int) -> list[object]:
    """The observers of one state file, or [] when the file is not to be trusted."""
    doc = read_trusted_json(path, owner, MAX_STATE_BYTES)
    observers = doc.get("observers") if isinstance(doc, dict) else None
    return list(observers) if isinstance(observers, list) else []


def _key(record: object) -> ObserverKey | None:
    if not isinstance(record, dict):
        return None
    try:
        return ObserverKey(
            int(record["netns_inode"]),
            int(record["ifindex"]),
            str(record["hook"]),
            int(record["pref"]),
            int(record["handle"]),
            int(record["prog_id"]),
            str(record["tag"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # an older probe's record (no program id): not enough to trust


def recorded_observers(directory: Path | None = None) -> Observers:
    """Every observer the trusted state files record; a warning when the directory is
    there but cannot be trusted (its records are then ignored)."""
    directory = directory or state_dir()
    if not os.path.lexists(directory):
        return Observers(frozenset())
    st = trusted_directory_stat(directory)
    if st is None:
        return Observers(
            frozenset(),
            (
                f"probe state directory {directory} is not a directory owned by root (or "
                "this user) and closed to others: its records are ignored, so no filter "
                "is taken for one of tcaudit's observers",
            ),
        )
    keys = set()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        names = []
    for name in names:
        if name.endswith(".json"):
            for record in _records(directory / name, st.st_uid):
                if (key := _key(record)) is not None:
                    keys.add(key)
    return Observers(frozenset(keys))


def entry_key(entry: Entry, interface: Interface, hook: Hook, netns: Netns) -> ObserverKey | None:
    if entry.pref is None or entry.handle is None or entry.program is None:
        return None
    if entry.program.tag is None:
        return None
    return ObserverKey(
        netns.id,
        interface.ifindex,
        hook.hook,
        entry.pref,
        entry.handle,
        entry.program.id,
        entry.program.tag,
    )


def mark_observers(scan: Scan, observers: Observers) -> Scan:
    """The scan with ``observer`` set on the entries a trusted record names."""
    if observers.warnings:
        scan = replace(scan, warnings=(*scan.warnings, *observers.warnings))
    if not observers.keys:
        return scan

    def mark(entry: Entry, interface: Interface, hook: Hook, netns: Netns) -> Entry:
        key = entry_key(entry, interface, hook, netns)
        return replace(entry, observer=True) if key in observers.keys else entry

    return map_entries(scan, mark)
