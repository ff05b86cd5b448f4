"""The JSON format: every document as a ``tcaudit/<document>/v1`` object.

Key names are the public contract (docs/json.md, ``schemas/``). The ``*_json``
functions build plain dicts (the support bundle and the tests use them directly);
``JsonFormat`` turns them into text, pretty on a terminal and compact for pipes, and
``JsonLinesFormat`` writes the watch's stream, one object per line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from tcaudit import __version__
from tcaudit.analysis.meaning import verdict_names
from tcaudit.model import (
    Entry,
    Hook,
    Interface,
    Netns,
    Program,
    Scan,
    VendorMatch,
    Verdict,
)
from tcaudit.output.interface import Format, failing, handle_text, stamp
from tcaudit.vendors.registry import ATTACH_KINDS, CERTAINTIES, HABITS

if TYPE_CHECKING:  # the answers' types: `tcaudit scan` need not import the advice layer,
    # nor the live tools' and the agents' types (each frozen dataclass costs ~1 ms to
    # create, and a warm scan takes 0.3 s)
    from tcaudit.advice.diff import Change
    from tcaudit.advice.explain import Explanation, ProgramListing
    from tcaudit.advice.merge import ClusterAnswer
    from tcaudit.advice.recommend import Finding, Recommendation, Where
    from tcaudit.model import (
        Counts,
        CwsAgent,
        ProbeResult,
        WatchEvent,
        WatchFinding,
        WatchSummary,
    )

SCAN_SCHEMA = "tcaudit/scan/v1"


EXPLAIN_SCHEMA = "tcaudit/explain/v1"


RECOMMEND_SCHEMA = "tcaudit/recommend/v1"


DIFF_SCHEMA = "tcaudit/diff/v1"


MERGE_SCHEMA = "tcaudit/merge/v1"


PROBE_SCHEMA = "tcaudit/probe/v1"


WATCH_SCHEMA = "tcaudit/watch/v1"


def dumps(doc: dict[str, Any], *, pretty: bool = True) -> str:
    """JSON text; compact for pipes (the C encoder: indenting costs 10x at 500 hooks)."""
    if pretty:
        return json.dumps(doc, indent=2) + "\n"
    return json.dumps(doc, separators=(",", ":")) + "\n"


def netns_json(ns: Netns) -> dict[str, Any]:
    return {
        "id": ns.id,
        "names": list(ns.names),
        "pids": list(ns.pids),
        "label": ns.label,
        "self": ns.is_self,
        "container_id": ns.container_id,
        "pod": ns.pod,
        "pod_uid": ns.pod_uid,
    }


def program_json(program: Program | None) -> dict[str, Any] | None:
    if program is None:
        return None
    return {
        "id": program.id,
        "name": program.name,
        "tag": program.tag,
        "type": program.type,
        "insns": program.insns,
        "maps": [{"id": m.id, "name": m.name, "type": m.type} for m in program.maps],
        "holders": [{"pid": h.pid, "comm": h.comm, "exe": h.exe} for h in program.holders],
        "btf_id": program.btf_id,
        "loaded_at": program.loaded_at,
        "uid": program.uid,
        "error": program.error,
    }


def verdict_json(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "possible": list(verdict.possible) if verdict.possible is not None else None,
        "ranges": [list(r) for r in verdict.ranges] if verdict.ranges is not None else None,
        "effective": list(verdict.effective) if verdict.effective is not None else None,
        "basis": verdict.basis,
        "reason": verdict.reason,
    }


def vendor_json(match: VendorMatch | None) -> dict[str, Any] | None:
    """The ``vendor`` object of an entry in scan JSON (see :data:`VENDOR_SCHEMA`)."""
    if match is None:
        return None
    fp = match.fingerprint
    return {
        "name": match.name,
        "version_hint": match.version_hint,
        "confidence": match.confidence,
        "evidence": list(match.evidence),
        "fingerprint": fp.id,
        "certainty": fp.certainty,
        "attach": fp.attach,
        "default_pref": fp.default_pref,
        "default_handle": None if fp.default_handle is None else f"0x{fp.default_handle:x}",
        "accept_verdict": fp.accept_verdict,
        "knob": fp.knob,
        "knob_note": fp.knob_note,
        "habits": list(fp.habits),
    }


VENDOR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Who put this entry here (tcaudit/vendors.py); the entry's vendor is "
    "null when the owner is unknown.",
    "required": ["name", "version_hint", "confidence", "evidence"],
    "properties": {
        "name": {"type": "string"},
        "version_hint": {"type": ["string", "null"]},
        "confidence": {"enum": ["high", "medium", "low"]},
        "evidence": {"type": "array", "items": {"type": "string"}},
        "fingerprint": {"type": "string"},
        "certainty": {"enum": list(CERTAINTIES)},
        "attach": {"enum": list(ATTACH_KINDS)},
        "default_pref": {"type": ["integer", "null"]},
        "default_handle": {"type": ["string", "null"], "pattern": "^0x[0-9a-f]+$"},
        "accept_verdict": {"type": ["string", "null"]},
        "knob": {"type": ["string", "null"]},
        "knob_note": {"type": ["string", "null"]},
        "habits": {"type": "array", "items": {"enum": list(HABITS)}},
    },
}
"""JSON Schema of :func:`vendor_json`'s object; an entry's ``vendor`` is this or null."""


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "pref": entry.pref,
        "handle": handle_text(entry.handle),
        "chain": entry.chain,
        "protocol": entry.protocol,
        "kind": entry.kind,
        "direct_action": entry.direct_action,
        "filter_name": entry.filter_name,
        "has_actions": entry.has_actions,
        "classid": handle_text(entry.classid),
        "link_id": entry.link_id,
        "cbpf_insns": entry.cbpf_insns,
        "reachable": entry.reachable,
        "observer": entry.observer,
        "program": program_json(entry.program),
        "verdict": verdict_json(entry.verdict),
        "vendor": vendor_json(entry.vendor),
    }


def hook_json(hook: Hook) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hook": hook.hook,
        "supported": hook.supported,
        "entries": [entry_json(e) for e in hook.entries],
    }
    if hook.hook.startswith("tcx/"):
        doc["revision"] = hook.revision
        doc["link_ids"] = list(hook.link_ids)
    else:
        doc["qdisc"] = hook.qdisc
        doc["block"] = hook.block
        doc["block_devices"] = list(hook.block_devices)
    if hook.note:
        doc["note"] = hook.note
    return doc


def interface_json(interface: Interface) -> dict[str, Any]:
    return {
        "name": interface.name,
        "ifindex": interface.ifindex,
        "kind": interface.kind,
        "hooks": [hook_json(h) for h in interface.hooks],
    }


def scan_json(scan: Scan) -> dict[str, Any]:
    return {
        "schema": SCAN_SCHEMA,
        "tcaudit_version": __version__,
        "host": {"hostname": scan.host.hostname, "kernel": scan.host.kernel, "tcx": scan.host.tcx},
        "namespaces": [
            {**netns_json(ns.netns), "interfaces": [interface_json(i) for i in ns.interfaces]}
            for ns in scan.namespaces
        ],
        "warnings": list(scan.warnings),
        "partial": scan.partial,
    }


def _listing_json(listing: ProgramListing, code: bool = True) -> dict[str, Any]:
    return {
        "program": program_json(listing.program),
        "possible": list(listing.possible) if listing.possible is not None else None,
        "ranges": [list(r) for r in listing.ranges] if listing.ranges is not None else None,
        "names": verdict_names(frozenset(listing.possible)) if listing.possible else [],
        "reason": listing.reason,
        "subprograms": list(listing.subprograms),
        "tail_calls": [
            {
                "pc": t.pc,
                "map_id": t.map_id,
                "index": t.index,
                "indexes": list(t.indexes) if t.indexes is not None else None,
                "targets": list(t.targets),
            }
            for t in listing.tail_calls
        ],
        "disassembly": [
            {
                "pc": line.pc,
                "text": line.text,
                **(
                    {
                        "returns": list(line.returns) if line.returns is not None else None,
                        "ranges": [list(r) for r in line.ranges]
                        if line.ranges is not None
                        else None,
                    }
                    if line.is_exit
                    else {}
                ),
            }
            for line in (listing.lines if code else ())
        ],
    }


def explain_json(explanation: Explanation, *, code: bool = True) -> dict[str, Any]:
    """``code=False`` leaves the disassembly out (programs can carry addresses as
    immediates: the support bundle includes it only with --include-addresses)."""
    return {
        "schema": EXPLAIN_SCHEMA,
        "tcaudit_version": __version__,
        "program": _listing_json(explanation.root, code),
        "tail_call_targets": [_listing_json(t, code) for t in explanation.targets],
        "attachments": [
            {
                "netns": a.netns,
                "interface": a.interface,
                "hook": a.hook,
                "pref": a.pref,
                "handle": handle_text(a.handle),
                "mode": a.mode,
                "effective": list(a.effective) if a.effective is not None else None,
            }
            for a in explanation.attachments
        ],
        "summary": explanation.summary,
    }


def _where_json(where: Where | None) -> dict[str, Any] | None:
    if where is None:
        return None
    return {
        "netns": where.netns,
        "netns_id": where.netns_id,
        "interface": where.interface,
        "hook": where.hook,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "level": finding.level,
        "kind": finding.kind,
        "message": finding.message,
        "where": _where_json(finding.where),
        "pref": finding.pref,
        "vendor": finding.vendor,
    }


def agent_json(agent: CwsAgent | None) -> dict[str, Any] | None:
    """One system-probe's network settings in effect, and where each came from."""
    if agent is None:
        return None
    values = {s.key: s.value for s in agent.settings}
    return {
        "pid": agent.pid,
        "config_file": agent.config_file,
        "network_enabled": values["enabled"],
        "classifier_priority": values["classifier_priority"],
        "classifier_handle": values["classifier_handle"],
        "raw_classifier_handle": values["raw_classifier_handle"],
        "ingress_enabled": values["ingress.enabled"],
        "raw_packet_enabled": values["raw_packet.enabled"],
        "sources": {s.key: s.source for s in agent.settings},
        "problems": list(agent.problems),
    }


def recommend_json(rec: Recommendation) -> dict[str, Any]:
    from tcaudit.advice.causes import phrase  # the causes' words, as the tables say them

    return {
        "schema": RECOMMEND_SCHEMA,
        "tcaudit_version": __version__,
        "action": rec.action,
        "classifier_priority": rec.classifier_priority,
        "current_priority": rec.current_priority,
        "priority_source": rec.priority_source,
        "cws_detected": rec.cws_detected,
        "summary": rec.summary,
        "hooks": rec.hooks,
        "blind": [
            {
                **(_where_json(b.where) or {}),
                "culprit_hook": b.culprit_hook,
                "vendor": b.vendor,
                "pref": b.pref,
                "program_id": b.program_id,
                "certain": b.certain,
                "fixable": b.fixable,
                "reason": b.reason,
                "cause": b.cause,
            }
            for b in rec.blind
        ],
        "causes": [
            {
                "cause": c.kind,
                "vendor": c.vendor,
                "pref": c.pref,
                "verbs": list(c.verbs),
                "hooks": c.hooks,
                "certain": c.certain,
                "fixable": c.fixable,
                "text": phrase(c),
            }
            for c in rec.causes
        ],
        "namespaces": [
            {
                "netns": n.netns,
                "netns_id": n.netns_id,
                "hooks": n.hooks,
                "blind": n.blind,
                "unfixable": n.unfixable,
                "vendors": list(n.vendors),
            }
            for n in rec.namespaces
        ],
        "alternatives": [
            {
                "kind": a.kind,
                "description": a.description,
                "classifier_priority": a.classifier_priority,
                "vendor": a.vendor,
                "setting": a.setting,
                "remaining_blind": a.remaining_blind,
            }
            for a in rec.alternatives
        ],
        "snippets": dict(rec.snippets),
        "findings": [finding_json(f) for f in rec.findings],
        "notes": list(rec.notes),
        "cws_agents": [agent_json(a) for a in rec.cws_agents],
        "cws_config": agent_json(rec.cws_config),
        "generated_at": stamp(rec.generated_at),
        "classifiers": [
            {"vendor": vendor, "hook": hook, "effective": effective, "count": count}
            for vendor, hook, effective, count in rec.classifiers
        ],
    }


def check_json(rec: Recommendation, fail_on: str) -> dict[str, Any]:
    doc = recommend_json(rec)
    doc["fail_on"] = fail_on
    doc["failed"] = bool(failing(rec.findings, fail_on))
    return doc


def _entry_brief(entry: Any) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "pref": entry.pref,
        "handle": None if entry.handle is None else f"0x{entry.handle:x}",
        "kind": entry.kind,
        "filter_name": entry.filter_name,
        "program": None
        if entry.program is None
        else {"id": entry.program.id, "name": entry.program.name, "tag": entry.program.tag},
        "effective": list(entry.verdict.effective)
        if entry.verdict and entry.verdict.effective is not None
        else None,
        "vendor": entry.vendor.name if entry.vendor else None,
    }


def diff_json(changes: list[Change], old: str, new: str, fail_on: str) -> dict[str, Any]:
    return {
        "schema": DIFF_SCHEMA,
        "tcaudit_version": __version__,
        "old": old,
        "new": new,
        "fail_on": fail_on,
        "failed": bool(failing(changes, fail_on)),
        "changes": [
            {
                "level": c.level,
                "kind": c.kind,
                "netns": c.netns,
                "interface": c.interface,
                "hook": c.hook,
                "message": c.message,
                "old": _entry_brief(c.old),
                "new": _entry_brief(c.new),
            }
            for c in changes
        ],
    }


def merge_json(answer: ClusterAnswer) -> dict[str, Any]:
    return {
        "schema": MERGE_SCHEMA,
        "tcaudit_version": __version__,
        "action": answer.action,
        "classifier_priority": answer.classifier_priority,
        "current_priority": answer.current_priority,
        "summary": answer.summary,
        "forcing_disable": list(answer.forcing_disable),
        "best_without_them": answer.best_without_them,
        "snippets": dict(answer.snippets),
        "nodes": [
            {
                "node": n.node,
                "source": n.source,
                "action": n.recommendation.action,
                "classifier_priority": n.recommendation.classifier_priority,
                "current_priority": n.recommendation.current_priority,
                "summary": n.recommendation.summary,
                "blind_at_cluster_priority": None
                if n.at_cluster_priority is None
                else len(n.at_cluster_priority.blind),
            }
            for n in answer.nodes
        ],
    }


def _counts_json(counts: Counts) -> dict[str, int]:
    return {"ipv4": counts.ipv4, "ipv6": counts.ipv6, "arp": counts.arp, "other": counts.other}


def probe_json(result: ProbeResult) -> dict[str, Any]:
    return {
        "schema": PROBE_SCHEMA,
        "tcaudit_version": __version__,
        "duration": round(result.duration, 3),
        "observers": [
            {
                "netns": {
                    "id": o.placement.netns.id,
                    "names": list(o.placement.netns.names),
                    "label": o.placement.netns.label,
                },
                "interface": o.placement.interface,
                "hook": o.placement.hook,
                "pref": o.placement.pref,
                "handle": f"0x{o.handle:x}",
                "slot": o.slot,
                "roles": list(o.placement.roles),
                "shares_pref": o.placement.shares,
                "packets": o.counts.packets,
                "bytes": o.counts.bytes,
                "breakdown": _counts_json(o.counts),
                "reference_packets": o.reference_packets,
                "reference": o.reference,
                "pass_ratio": None if o.pass_ratio is None else round(o.pass_ratio, 4),
            }
            for o in result.observers
        ],
        "conclusions": [
            {
                "netns": c.netns,
                "interface": c.interface,
                "hook": c.hook,
                "pref": c.entry.pref,
                "handle": None if c.entry.handle is None else f"0x{c.entry.handle:x}",
                "filter_name": c.entry.filter_name,
                "program_id": c.entry.program.id if c.entry.program else None,
                "vendor": c.entry.vendor.name if c.entry.vendor else None,
                "static": list(c.entry.verdict.effective)
                if c.entry.verdict and c.entry.verdict.effective is not None
                else None,
                "packets_before": c.before,
                "packets_after": c.after,
                "ends_chain_ratio": None
                if c.ends_chain_ratio is None
                else round(c.ends_chain_ratio, 4),
                "agrees": c.agrees,
                "message": c.message,
            }
            for c in result.conclusions
        ],
        "skipped": [
            {"netns": s.netns, "interface": s.interface, "hook": s.hook, "reason": s.reason}
            for s in result.plan.skipped
        ],
        "notes": list(result.notes),
    }


def watch_json(item: WatchEvent | WatchFinding) -> dict[str, Any]:
    from tcaudit.model import WatchFinding

    if isinstance(item, WatchFinding):
        return {
            "schema": WATCH_SCHEMA,
            "type": "finding",
            "time": stamp(item.time),
            "kind": item.kind,
            "message": item.message,
            "netns": item.netns,
            "interface": item.interface,
            "hook": item.hook,
        }
    actor = item.actor
    return {
        "schema": WATCH_SCHEMA,
        "type": "event",
        "time": stamp(item.time),
        "netns": {"id": item.netns_id, "label": item.netns},
        "what": item.what,
        "interface": item.interface,
        "hook": item.hook,
        "pref": item.pref,
        "handle": None if item.handle is None else f"0x{item.handle:x}",
        "kind": item.kind,
        "filter_name": item.filter_name,
        "program": program_json(item.program),
        "vendor": vendor_json(item.vendor),
        "actor": None
        if actor is None
        else {"pid": actor.pid, "comm": actor.comm, "portid": actor.portid, "how": actor.how},
        "previous_program": program_json(item.previous_program),
        "previous_vendor": vendor_json(item.previous_vendor),
        "note": item.note,
    }


def watch_summary_json(summary: WatchSummary) -> dict[str, Any]:
    return {
        "schema": WATCH_SCHEMA,
        "type": "summary",
        "duration": round(summary.ended - summary.started, 3),
        "namespaces": summary.namespaces,
        "events": dict(sorted(summary.events.items())),
        "lost": summary.lost,
        "findings": [watch_json(f) for f in summary.findings],
        "findings_dropped": summary.findings_dropped,
    }


class JsonFormat(Format):
    """``--format json``: one document, indented when ``pretty``."""

    def __init__(self, *, pretty: bool = True) -> None:
        self.pretty = pretty

    def _text(self, doc: dict[str, Any]) -> str:
        return dumps(doc, pretty=self.pretty)

    def scan(self, scan: Scan, *, show_all: bool = False) -> str:
        return self._text(scan_json(scan))

    def explain(self, explanation: Explanation, *, code: bool = True) -> str:
        return self._text(explain_json(explanation, code=code))

    def recommend(self, rec: Recommendation, *, show_all: bool = False) -> str:
        return self._text(recommend_json(rec))

    def check(self, rec: Recommendation, fail_on: str, *, show_all: bool = False) -> str:
        return self._text(check_json(rec, fail_on))

    def diff(self, changes: list[Change], old: str, new: str, fail_on: str) -> str:
        return self._text(diff_json(changes, old, new, fail_on))

    def merge(self, answer: ClusterAnswer) -> str:
        return self._text(merge_json(answer))

    def probe(self, result: ProbeResult) -> str:
        return self._text(probe_json(result))


class JsonLinesFormat(Format):
    """``--format jsonl`` (watch): one compact object per line, the summary last."""

    def watch_item(self, item: WatchEvent | WatchFinding) -> str:
        return json.dumps(watch_json(item))

    def watch_summary(self, summary: WatchSummary) -> str:
        return json.dumps(watch_summary_json(summary)) + "\n"
