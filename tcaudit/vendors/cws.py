"""Datadog CWS on the hooks: which entries are its own, and the priority it runs at.

CWS (system-probe's event monitor) attaches its classifiers at
``runtime_security_config.network.classifier_priority`` (default 10) on every interface of
every network namespace (shared/reference/datadog-cws.md). The recommendation, the probe
and the bundle all need these answers; they live here so the live tools never import the
advice layer.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from tcaudit.model import Entry, Scan, VendorMatch

CWS_VENDOR: Final = "Datadog CWS"
DEFAULT_PRIORITY: Final = 10
"""system-probe's ``runtime_security_config.network.classifier_priority`` default."""


# what CWS's classifiers can return: TC_ACT_UNSPEC (`#define ACT_OK TC_ACT_UNSPEC`), and
# TC_ACT_SHOT since a `network_filter` rule with `policy: drop` exists (datadog-cws.md)
CWS_VERDICTS: Final = frozenset({"continue", "drop"})


def is_cws(match: VendorMatch | None) -> bool:
    """Attributed to Datadog CWS: by its names, which anyone can choose (see trusted)."""
    return match is not None and match.name == CWS_VENDOR


def trusted(entry: Entry) -> bool:
    """A CWS-attributed entry that behaves like CWS: its verdict can only hand packets on
    (or drop them). Only such an entry is left out of the blind-spot analysis and sets
    the priority in effect; any other one named like CWS (accepting, redirecting, or of
    unknown verdict) counts like any vendor, and the recommendation says so."""
    if not is_cws(entry.vendor) or entry.verdict is None:
        return False
    effective = entry.verdict.effective
    return effective is not None and set(effective) <= CWS_VERDICTS


def impostor(entry: Entry) -> bool:
    """Named like CWS, but its verdict says it is not (or cannot be shown to be) CWS."""
    return is_cws(entry.vendor) and not trusted(entry)


def detect_priority(scan: Scan) -> tuple[int | None, int]:
    """(pref CWS uses on this node or None, how many CWS filters were seen).

    Only clsact filters count: CWS attaches with tc, and a pref means nothing on TCX; and
    only trusted ones: a pref-1 look-alike must not set the priority CWS is said to run at.
    """
    prefs = Counter(
        entry.pref
        for ns in scan.namespaces
        for interface in ns.interfaces
        for hook in interface.hooks
        for entry in hook.entries
        if hook.hook.startswith("clsact/") and entry.pref is not None and trusted(entry)
    )
    if not prefs:
        return None, 0
    return prefs.most_common(1)[0][0], sum(prefs.values())
