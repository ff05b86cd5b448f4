"""`tcaudit merge NODE.json ...`: one answer for a whole cluster.

Helm values (and most agent configuration) are per cluster, so the priority must work on
every node. Each node's snapshot gets its own recommendation; the cluster's priority is
the lowest one any node needs, checked again on every node (a pref one node's other
filters hold could make it unusable there) and lowered until it works everywhere. A node
that forces disablement makes the cluster's answer "disable-network", with that node
named; the alternatives then keep CWS with those nodes' blind spots.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcaudit.advice.recommend import Recommendation, recommend
from tcaudit.advice.snippets import snippets
from tcaudit.model import Scan
from tcaudit.vendors.cws import DEFAULT_PRIORITY


@dataclass(frozen=True)
class NodeResult:
    node: str  # the file's hostname (or file name when hostnames repeat)
    source: str  # the file
    recommendation: Recommendation
    at_cluster_priority: Recommendation | None  # re-evaluated at the cluster's answer


@dataclass(frozen=True)
class ClusterAnswer:
    action: str
    classifier_priority: int | None
    current_priority: int
    nodes: tuple[NodeResult, ...]
    forcing_disable: tuple[str, ...]  # nodes with hooks blind at every priority
    best_without_them: int | None  # the priority for the others if their blind spots are accepted
    snippets: dict[str, str]
    summary: str


def _works(scan: Scan, priority: int) -> bool:
    """No hook is blind at ``priority`` and CWS can attach there on every hook."""
    rec = recommend(scan, priority=priority)
    return not rec.blind and not any(f.kind == "pref-collision" for f in rec.findings)


def merge(nodes: list[tuple[str, str, Scan]]) -> ClusterAnswer:
    """``nodes``: (node name, source file, snapshot) for every node."""
    results = [(name, source, scan, recommend(scan)) for name, source, scan in nodes]
    current = min((r.current_priority for *_, r in results), default=DEFAULT_PRIORITY)
    forcing = tuple(name for name, _, _, r in results if r.action == "disable-network")
    fixable = [(name, scan, r) for name, _, scan, r in results if r.action != "disable-network"]

    candidate: int | None = min(
        (r.classifier_priority for _, _, r in fixable if r.classifier_priority is not None),
        default=current,
    )
    while candidate is not None and candidate >= 1:
        if all(_works(scan, candidate) for _, scan, _ in fixable):
            break
        candidate -= 1
    if candidate is not None and candidate < 1:
        candidate = None

    if forcing or candidate is None:
        action, chosen = "disable-network", None
    elif all(r.action == "keep" for *_, r in results) and candidate == current:
        action, chosen = "keep", current
    else:
        action, chosen = "set-priority", candidate

    evaluated = tuple(
        NodeResult(name, source, r, recommend(scan, priority=chosen) if chosen else None)
        for name, source, scan, r in results
    )
    if action == "disable-network":
        reason = (
            f"{len(forcing)} node(s) stay blind at every priority: {', '.join(forcing)}"
            if forcing
            else "no single priority works on every node"
        )
        summary = f"Disable CWS network detections cluster-wide: {reason}."
        if candidate is not None:
            summary += (
                f" Accepting those nodes' blind spots, classifier_priority {candidate} "
                "serves every other node."
            )
    elif action == "keep":
        summary = f"Keep classifier_priority {current}: no node has a blind hook."
    else:
        summary = (
            f"Set classifier_priority {chosen} cluster-wide: it puts CWS ahead of every "
            f"chain-ending classifier on all {len(results)} nodes."
        )
    return ClusterAnswer(
        action=action,
        classifier_priority=chosen,
        current_priority=current,
        nodes=evaluated,
        forcing_disable=forcing,
        best_without_them=candidate,
        snippets=snippets(action, chosen),
        summary=summary,
    )
