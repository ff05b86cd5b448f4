"""Renderers for the answers: recommend, check (table, json, junit, markdown), diff and
merge. Like render.py they return strings; only the CLI writes them."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from tcaudit import __version__
from tcaudit.advice.diff import Change
from tcaudit.advice.merge import ClusterAnswer
from tcaudit.advice.recommend import Finding, Recommendation, Where
from tcaudit.model import CleanupReport, Counts, ProbeResult, WatchEvent, WatchFinding, WatchSummary

LEVELS = {"blind": 2, "warning": 1, "never": 99}


def escape(text: str) -> str:
    """XML character data (xml.sax.saxutils would pull in urllib: 10 ms per run)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(text: str) -> str:
    return '"' + escape(text).replace('"', "&quot;").replace("\n", "&#10;") + '"'


RECOMMEND_SCHEMA = "tcaudit/recommend/v1"


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


def recommend_json(rec: Recommendation) -> dict[str, Any]:
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
            }
            for b in rec.blind
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
    }


def recommend_text(rec: Recommendation) -> str:
    """The short answer first (what to do, why, what to paste), details after."""
    from tabulate import tabulate

    title = {
        "keep": f"KEEP classifier_priority {rec.current_priority}",
        "set-priority": f"SET classifier_priority {rec.classifier_priority}",
        "disable-network": "DISABLE CWS network detections",
    }[rec.action]
    out = [title, "", *textwrap.wrap(rec.summary, 88), ""]
    if rec.action != "keep":
        out.append("Paste one of these:")
        labels = {
            "system_probe_yaml": "system-probe.yaml",
            "helm_values": "Helm values",
            "env": "environment of the system-probe container",
        }
        for key, label in labels.items():
            out += [f"  # {label}", *("    " + line for line in rec.snippets[key].splitlines()), ""]
    for alternative in rec.alternatives:
        out += textwrap.wrap(
            f"Alternative ({alternative.kind}): {alternative.description}",
            88,
            subsequent_indent="  ",
        )
    if rec.alternatives:
        out.append("")
    if rec.blind:
        rows = [
            [
                b.where.netns,
                b.where.interface,
                b.where.hook,
                b.culprit_hook,
                "" if b.pref is None else str(b.pref),
                b.vendor or "unknown",
                "yes" if b.fixable else "no",
                b.reason if b.certain else f"(may) {b.reason}",
            ]
            for b in rec.blind
        ]
        out += [
            f"Blind at priority {rec.current_priority}:",
            tabulate(
                rows,
                headers=[
                    "netns",
                    "interface",
                    "cws hook",
                    "culprit on",
                    "pref",
                    "vendor",
                    "fixable",
                    "why",
                ],
                tablefmt="simple",
            ),
            "",
        ]
    partial = [n for n in rec.namespaces if n.blind]
    if partial:
        out.append("Per namespace (blind / hooks, of which no priority fixes):")
        out += [
            f"  {n.netns}: {n.blind}/{n.hooks}, {n.unfixable} unfixable"
            + (f"  [{', '.join(n.vendors)}]" if n.vendors else "")
            for n in partial
        ]
        out.append("")
    warnings = [f for f in rec.findings if f.level == "warning"]
    if warnings:
        out.append("Warnings:")
        out += [f"  - {f.message}" for f in warnings[:20]]
        if len(warnings) > 20:
            out.append(f"  ... and {len(warnings) - 20} more (--format json lists them all)")
        out.append("")
    out += [f"Note: {note}" for note in rec.notes]
    return "\n".join(out) + "\n"


def failing(findings: tuple[Finding, ...] | list[Change], fail_on: str) -> list[Any]:
    """Findings (or diff changes) at or above ``--fail-on``."""
    threshold = LEVELS[fail_on]
    return [f for f in findings if LEVELS[f.level] >= threshold]


def check_json(rec: Recommendation, fail_on: str) -> dict[str, Any]:
    doc = recommend_json(rec)
    doc["fail_on"] = fail_on
    doc["failed"] = bool(failing(rec.findings, fail_on))
    return doc


def check_text(rec: Recommendation, fail_on: str) -> str:
    bad = failing(rec.findings, fail_on)
    head = (
        f"FAIL: {len(bad)} finding(s) at or above '{fail_on}'"
        if bad
        else f"OK: nothing at or above '{fail_on}'"
    )
    lines = [head, ""]
    lines += [f"[{f.level}] {f.kind}: {f.message}" for f in rec.findings]
    if rec.findings:
        lines.append("")
    return "\n".join(lines) + recommend_text(rec)


def check_junit(rec: Recommendation, fail_on: str) -> str:
    """One testcase per hook CWS attaches to, failing with that hook's findings."""
    by_hook: dict[tuple[str, str, str], list[Finding]] = {}
    general: list[Finding] = []
    for finding in rec.findings:
        if finding.where is None:
            general.append(finding)
        else:
            key = (finding.where.netns, finding.where.interface, finding.where.hook)
            by_hook.setdefault(key, []).append(finding)
    threshold = LEVELS[fail_on]
    cases = []
    for summary in rec.namespaces:
        cases.append(
            (
                f"netns {summary.netns}",
                f"{summary.hooks} hooks",
                [f for key, fs in by_hook.items() if key[0] == summary.netns for f in fs],
            )
        )
    cases += [("node", "general", general)]
    body = []
    failures = 0
    for classname, name, found in cases:
        bad = [f for f in found if LEVELS[f.level] >= threshold]
        failures += bool(bad)
        inner = ""
        if bad:
            text = "\n".join(f"[{f.level}] {f.message}" for f in bad)
            inner = (
                f"<failure message={quoteattr(bad[0].message)} type={quoteattr(bad[0].kind)}>"
                f"{escape(text)}</failure>"
            )
        body.append(
            f"    <testcase classname={quoteattr(classname)} name={quoteattr(name)}>"
            f"{inner}</testcase>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites name="tcaudit check">\n  <testsuite name="tcaudit {__version__}" '
        f'tests="{len(cases)}" failures="{failures}">\n'
        + "\n".join(body)
        + f"\n    <system-out>{escape(rec.summary)}</system-out>\n  </testsuite>\n</testsuites>\n"
    )


def check_markdown(rec: Recommendation, fail_on: str) -> str:
    bad = failing(rec.findings, fail_on)
    status = "❌ FAIL" if bad else "✅ OK"
    out = [f"### tcaudit check: {status} (fail on `{fail_on}`)", "", rec.summary, ""]
    out += [
        f"**Action:** `{rec.action}`"
        + (
            f", `classifier_priority: {rec.classifier_priority}`"
            if rec.classifier_priority is not None
            else ""
        ),
        "",
    ]
    if rec.findings:
        out += ["| level | kind | where | vendor | message |", "|---|---|---|---|---|"]
        for f in rec.findings:
            where = f"{f.where.netns} {f.where.interface} {f.where.hook}" if f.where else ""
            message = f.message.replace("|", "\\|")
            out.append(f"| {f.level} | {f.kind} | {where} | {f.vendor or ''} | {message} |")
        out.append("")
    if rec.action != "keep":
        out += [
            "<details><summary>settings to paste</summary>",
            "",
            "```yaml",
            rec.snippets["system_probe_yaml"].rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


DIFF_SCHEMA = "tcaudit/diff/v1"
MERGE_SCHEMA = "tcaudit/merge/v1"


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


def diff_text(changes: list[Change], fail_on: str) -> str:
    if not changes:
        return "no changes on any tc hook\n"
    bad = failing(changes, fail_on)
    head = f"{len(changes)} change(s); {len(bad)} at or above '{fail_on}'"
    lines = [head, ""]
    for c in changes:
        where = " ".join(x for x in (c.netns, c.interface, c.hook) if x)
        lines.append(f"[{c.level}] {c.kind:16} {where}: {c.message}")
    return "\n".join(lines) + "\n"


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


def merge_text(answer: ClusterAnswer) -> str:
    from tabulate import tabulate

    title = {
        "keep": f"KEEP classifier_priority {answer.current_priority}",
        "set-priority": f"SET classifier_priority {answer.classifier_priority} (cluster-wide)",
        "disable-network": "DISABLE CWS network detections (cluster-wide)",
    }[answer.action]
    rows = [
        [
            n.node,
            n.recommendation.action,
            ""
            if n.recommendation.classifier_priority is None
            else str(n.recommendation.classifier_priority),
            n.recommendation.summary[:90],
        ]
        for n in answer.nodes
    ]
    out = [
        title,
        "",
        *textwrap.wrap(answer.summary, 88),
        "",
        tabulate(rows, headers=["node", "action", "priority", "why"], tablefmt="simple"),
        "",
    ]
    if answer.action != "keep":
        out += [
            "Helm values:",
            *("  " + line for line in answer.snippets["helm_values"].splitlines()),
            "",
        ]
    return "\n".join(out) + "\n"


PROBE_SCHEMA = "tcaudit/probe/v1"


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


def probe_text(result: ProbeResult) -> str:
    from tabulate import tabulate

    rows = [
        [
            o.placement.netns.label,
            o.placement.interface,
            o.placement.hook,
            o.placement.pref,
            ", ".join(o.placement.roles) + (" (shared pref)" if o.placement.shares else ""),
            o.counts.packets,
            o.reference_packets if o.reference_packets is not None else "-",
            o.reference,
            "-" if o.pass_ratio is None else f"{o.pass_ratio:.0%}",
        ]
        for o in result.observers
    ]
    out = [
        f"observed for {result.duration:.1f} s",
        "",
        tabulate(
            rows,
            headers=[
                "netns",
                "interface",
                "hook",
                "pref",
                "observer",
                "packets",
                "reference",
                "reference is",
                "pass",
            ],
            tablefmt="simple",
        ),
        "",
    ]
    if result.conclusions:
        out.append("What the traffic showed:")
        for c in result.conclusions:
            flag = "!!" if c.agrees is False else "  "
            out += textwrap.wrap(
                f"{c.interface} {c.hook} ({c.netns}): {c.message}",
                92,
                initial_indent=f"{flag} ",
                subsequent_indent="     ",
            )
        out.append("")
    out += [f"note: {note}" for note in result.notes]
    return "\n".join(out) + "\n"


def cleanup_text(report: CleanupReport) -> str:
    out = [f"removed: {item}" for item in report.removed]
    out += [f"already gone: {item}" for item in report.gone]
    out += [f"left alone: {item}" for item in report.active]
    if not out:
        out = ["nothing to clean up: no observer was left behind"]
    return "\n".join(out) + "\n"


WATCH_SCHEMA = "tcaudit/watch/v1"


def _stamp(when: float) -> str:
    return (
        datetime.fromtimestamp(when, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def watch_json(item: WatchEvent | WatchFinding) -> dict[str, Any]:
    if isinstance(item, WatchFinding):
        return {
            "schema": WATCH_SCHEMA,
            "type": "finding",
            "time": _stamp(item.time),
            "kind": item.kind,
            "message": item.message,
            "netns": item.netns,
            "interface": item.interface,
            "hook": item.hook,
        }
    from tcaudit.output.render import program_json
    from tcaudit.vendors.attribution import vendor_json

    actor = item.actor
    return {
        "schema": WATCH_SCHEMA,
        "type": "event",
        "time": _stamp(item.time),
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


def watch_line(item: WatchEvent | WatchFinding) -> str:
    when = _stamp(item.time)[11:]
    if isinstance(item, WatchFinding):
        return f"{when} FINDING {item.kind}: {item.message}"
    parts = [when, item.what, item.netns]
    if item.interface:
        parts.append(item.interface)
    if item.hook:
        parts.append(item.hook)
    if item.pref is not None:
        parts.append(f"pref {item.pref} handle 0x{(item.handle or 0):x}")
    if item.filter_name:
        parts.append(item.filter_name)
    if item.program is not None:
        parts.append(f"prog {item.program.id} {item.program.name or ''}".rstrip())
    if item.vendor is not None:
        parts.append(f"[{item.vendor.name}]")
    if item.previous_vendor is not None or item.previous_program is not None:
        was = item.previous_vendor.name if item.previous_vendor else "unknown"
        parts.append(f"(was {was})")
    if item.actor is not None:
        parts.append(f"by {item.actor.text()}")
    if item.note:
        parts.append(f"- {item.note}")
    return " ".join(parts)


def watch_summary(summary: WatchSummary) -> dict[str, Any]:
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


def watch_summary_text(summary: WatchSummary) -> str:
    counts = ", ".join(f"{n} {what}" for what, n in sorted(summary.events.items())) or "none"
    out = [
        f"watched {summary.namespaces} namespaces for "
        f"{summary.ended - summary.started:.1f} s; events: {counts}"
    ]
    if summary.lost:
        out.append(f"events lost {summary.lost} time(s) (each followed by a rescan)")
    if summary.findings:
        out.append(f"{len(summary.findings) + summary.findings_dropped} finding(s):")
        out += [f"  - {f.kind}: {f.message}" for f in summary.findings]
    else:
        out.append("no findings")
    return "\n".join(out) + "\n"
