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

from tcaudit.model import Scan, VendorMatch

CWS_VENDOR: Final = "Datadog CWS"
DEFAULT_PRIORITY: Final = 10
"""system-probe's ``runtime_security_config.network.classifier_priority`` default."""


def is_cws(match: VendorMatch | None) -> bool:
    """True for Datadog CWS's own filters (never a competing vendor)."""
    return match is not None and match.name == CWS_VENDOR


def detect_priority(scan: Scan) -> tuple[int | None, int]:
    """(pref CWS uses on this node or None, how many CWS filters were seen).

    Only clsact filters count: CWS attaches with tc, and a pref means nothing on TCX.
    """
    prefs = Counter(
        entry.pref
        for ns in scan.namespaces
        for interface in ns.interfaces
        for hook in interface.hooks
        for entry in hook.entries
        if hook.hook.startswith("clsact/") and entry.pref is not None and is_cws(entry.vendor)
    )
    if not prefs:
        return None, 0
    return prefs.most_common(1)[0][0], sum(prefs.values())
