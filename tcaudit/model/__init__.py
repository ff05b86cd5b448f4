"""The data model: the frozen dataclasses that flow from the scan to the renderers.

The bottom layer, imported by every other (it imports no other tcaudit module), in three
modules loaded on first use, so a scan never pays for the live tools' types (each
frozen dataclass costs ~0.7 ms to create at import):

- ``hooks``: the inventory (namespaces, interfaces, hooks, entries, programs, verdicts);
- ``fingerprints``: the vendor registry's fingerprints and an entry's attribution;
- ``live``: the live tools' results (probe, watch), so output renders them without
  importing live/;
- ``agents``: the CWS configuration a running system-probe applies.

``from tcaudit.model import Entry`` works for every name; this package's ``__init__``
imports nothing until a name is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcaudit.model.agents import CwsAgent, CwsSetting
    from tcaudit.model.fingerprints import Fingerprint, Matchers, VendorMatch
    from tcaudit.model.hooks import (
        HOOK_DIRECTION,
        HOOKS,
        Entry,
        Holder,
        Hook,
        Host,
        Interface,
        MapRef,
        NamespaceScan,
        Netns,
        Program,
        Scan,
        Verdict,
        map_entries,
    )
    from tcaudit.model.live import (
        Actor,
        CleanupReport,
        Conclusion,
        Counts,
        ObserverResult,
        Placement,
        Plan,
        ProbeResult,
        Skipped,
        WatchEvent,
        WatchFinding,
        WatchSummary,
    )

_WHERE: dict[str, str] = {
    "CwsAgent": "agents",
    "CwsSetting": "agents",
    "HOOKS": "hooks",
    "HOOK_DIRECTION": "hooks",
    "Netns": "hooks",
    "MapRef": "hooks",
    "Holder": "hooks",
    "Program": "hooks",
    "Verdict": "hooks",
    "Entry": "hooks",
    "Hook": "hooks",
    "Interface": "hooks",
    "NamespaceScan": "hooks",
    "Host": "hooks",
    "Scan": "hooks",
    "map_entries": "hooks",
    "Matchers": "fingerprints",
    "Fingerprint": "fingerprints",
    "VendorMatch": "fingerprints",
    "Counts": "live",
    "Placement": "live",
    "Skipped": "live",
    "Plan": "live",
    "CleanupReport": "live",
    "ObserverResult": "live",
    "Conclusion": "live",
    "ProbeResult": "live",
    "Actor": "live",
    "WatchEvent": "live",
    "WatchFinding": "live",
    "WatchSummary": "live",
}

__all__ = [
    "HOOKS",
    "HOOK_DIRECTION",
    "Actor",
    "CleanupReport",
    "Conclusion",
    "Counts",
    "CwsAgent",
    "CwsSetting",
    "Entry",
    "Fingerprint",
    "Holder",
    "Hook",
    "Host",
    "Interface",
    "MapRef",
    "Matchers",
    "NamespaceScan",
    "Netns",
    "ObserverResult",
    "Placement",
    "Plan",
    "ProbeResult",
    "Program",
    "Scan",
    "Skipped",
    "VendorMatch",
    "Verdict",
    "WatchEvent",
    "WatchFinding",
    "WatchSummary",
    "map_entries",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tcaudit.model.{module}"), name)
    globals()[name] = value  # looked up once
    return value
