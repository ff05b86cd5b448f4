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

from tcaudit.inventory.cws_agents import is_system_probe
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


def held_by_system_probe(entry: Entry) -> bool:
    """Its program is held open by a running system-probe (comm AND executable, the rule
    of inventory/cws_agents.py): evidence no filter or program name can give."""
    program = entry.program
    return program is not None and any(
        is_system_probe(h.comm, h.exe) for h in program.holders)


def trusted(entry: Entry) -> bool:
    """A CWS-attributed entry that is CWS's own: its verdict can only hand packets on (or
    drop them), or a running system-probe holds its program. Only such an entry is left
    out of the blind-spot analysis and sets the priority in effect; any other one named
    like CWS (accepting, redirecting, or of unknown verdict) counts like any vendor, and
    the recommendation says so.

    The second way is for CWS's raw-packet classifiers: with raw-packet rules loaded,
    system-probe fills their router with filters generated at run time whose no-match
    path returns TC_ACT_OK (pkg/security/ebpf/probes/rawpacket/pcap.go in
    DataDog/datadog-agent 7.66.0), so they can accept. They stay CWS's own; the
    recommendation says what their accepting means for what runs after them
    (``cws-ends-chain``)."""
    if not is_cws(entry.vendor):
        return False
    if held_by_system_probe(entry):
        return True
    if entry.verdict is None:
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
