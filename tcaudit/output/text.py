"""The text format: tables and lines for people (``--format table``, watch's ``text``).

Every command's answer comes first and the details after; tabulate is imported only when
a table is drawn (saves ~20 ms on JSON runs).
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from tcaudit.analysis.meaning import ranges_text, verdict_names
from tcaudit.model import (
    CleanupReport,
    Entry,
    ProbeResult,
    Scan,
    Verdict,
    WatchEvent,
    WatchFinding,
    WatchSummary,
)
from tcaudit.output.interface import Format, failing, handle_text, stamp
from tcaudit.output.sanitize import safe_text, shown

if TYPE_CHECKING:  # the answers' types: `tcaudit scan` need not import the advice layer
    from tcaudit.advice.diff import Change
    from tcaudit.advice.explain import Explanation, ProgramListing
    from tcaudit.advice.merge import ClusterAnswer
    from tcaudit.advice.recommend import Recommendation

def verdict_text(verdict: Verdict | None) -> str:
    """``accept|drop``, ``continue``, or ``?`` when unknown."""
    if verdict is None or verdict.effective is None:
        return "?"
    return "|".join(verdict.effective)


def _program_text(entry: Entry) -> str:
    if entry.kind == "cbpf":
        return f"classic BPF, {entry.cbpf_insns} insns"
    program = entry.program
    if program is None:
        return "-" if entry.kind not in ("bpf", "tcx") else "? (no program id)"
    if program.error:
        return f"id {program.id}: {program.error}"
    return f"{program.id} {shown(program.name or '') or '(no name)'}"


def _vendor_text(entry: Entry) -> str:
    match = entry.vendor
    if match is None:
        return "unknown"
    version = f" {match.version_hint}" if match.version_hint else ""
    return shown(f"{match.name}{version} ({match.confidence})")


def _holders_text(entry: Entry) -> str:
    if entry.program is None or not entry.program.holders:
        return ""
    return ", ".join(f"{shown(h.comm or '?')}[{h.pid}]" for h in entry.program.holders[:3]) + (
        " …" if len(entry.program.holders) > 3 else ""
    )


@safe_text
def scan_table(scan: Scan, *, show_all: bool = False) -> str:
    """A table per namespace; interfaces with nothing on their hooks hidden unless show_all."""
    from tabulate import tabulate  # only tables need it (saves ~20 ms on JSON runs)

    blocks: list[str] = []
    hidden = 0
    for ns in scan.namespaces:
        rows = []
        for interface in ns.interfaces:
            if not show_all and interface.entry_count == 0:
                hidden += 1
                continue
            first = True
            for hook in interface.hooks:
                if not hook.entries:
                    if show_all:
                        state = "empty" if hook.supported else (hook.note or "unsupported")
                        name = shown(interface.name) if first else ""
                        rows.append([name, hook.hook, "", "", state, "", "", "", "", ""])
                        first = False
                    continue
                for entry in hook.entries:
                    flags = []
                    if entry.direct_action:
                        flags.append("da")
                    if entry.has_actions:
                        flags.append("actions")
                    if not entry.reachable:
                        flags.append(f"chain {entry.chain}: unreachable")
                    if hook.block:
                        flags.append(f"block {hook.block}")
                    rows.append(
                        [
                            shown(interface.name) if first else "",
                            hook.hook,
                            "" if entry.pref is None else str(entry.pref),
                            handle_text(entry.handle)
                            or (f"link {entry.link_id}" if entry.link_id else "attach"),
                            entry.kind + (" " + ",".join(flags) if flags else ""),
                            shown(entry.filter_name or ""),
                            _program_text(entry),
                            verdict_text(entry.verdict),
                            _vendor_text(entry),
                            _holders_text(entry),
                        ]
                    )
                    first = False
        if not rows:
            continue
        header = f"netns {shown(ns.netns.label)} [inode {ns.netns.id}]"
        table = tabulate(
            rows,
            headers=[
                "interface",
                "hook",
                "pref",
                "handle",
                "kind",
                "filter name",
                "program",
                "verdict",
                "vendor",
                "held by",
            ],
            tablefmt="simple",
        )
        blocks.append(f"{header}\n{table}")
    if not blocks:
        blocks.append("no classifiers on any selected tc hook")
    summary = (
        f"{len(scan.namespaces)} namespaces, "
        f"{sum(len(ns.interfaces) for ns in scan.namespaces)} interfaces, "
        f"{sum(i.entry_count for ns in scan.namespaces for i in ns.interfaces)} entries"
    )
    if scan.host.tcx is False:
        summary += "; kernel has no TCX (tcx hooks not available)"
    if hidden:
        summary += f"; {hidden} interfaces without classifiers hidden (--all shows them)"
    return "\n\n".join(blocks) + "\n\n" + summary + "\n"


def _listing_text(listing: ProgramListing, code: bool = True) -> list[str]:
    program = listing.program
    if listing.possible is not None:
        values = ", ".join(verdict_names(frozenset(listing.possible)))
    elif listing.ranges is not None:
        values = ranges_text(listing.ranges)
    else:
        values = f"unknown ({listing.reason})"
    out = [
        f"program {program.id} {shown(program.name or '') or '(no name)'}  type {program.type}  "
        f"tag {program.tag}  {program.insns} insns  loaded {program.loaded_at}",
        f"  returns: {values}",
    ]
    if listing.reason and listing.ranges is not None and listing.possible is not None:
        out.append(f"  depends on: {listing.reason}")
    if listing.subprograms:
        out.append("  subprograms start at: " + ", ".join(str(s) for s in listing.subprograms))
    for site in listing.tail_calls:
        if site.index is not None:
            index = f"slot {site.index}"
        elif site.indexes is not None:
            index = "slots " + ", ".join(str(i) for i in site.indexes)
        else:
            index = "any filled slot"
        targets = ", ".join(str(t) for t in site.targets) or "none (empty slot: falls through)"
        out.append(f"  tail call at {site.pc}: prog array {site.map_id} {index} -> {targets}")
    out.append("")
    if not code:
        out.append("  (disassembly left out: it can hold addresses as immediates)")
        return out
    for line in listing.lines:
        if line.function_start:
            out.append(f"  ; subprogram at {line.pc}")
        text = f"  {line.pc:5d}: {line.text}"
        if line.is_exit:
            if line.returns is not None:
                returns = ", ".join(verdict_names(frozenset(line.returns)))
            elif line.ranges is not None:
                returns = ranges_text(line.ranges)
            else:
                returns = "unknown"
            text = f"{text:<48} ; returns {returns}"
        out.append(text)
    return out


@safe_text
def explain_text(explanation: Explanation, *, code: bool = True) -> str:
    out = _listing_text(explanation.root, code)
    for target in explanation.targets:
        out += ["", f"--- tail-call target {target.program.id} ---", *_listing_text(target, code)]
    out += ["", "attached at:"]
    if not explanation.attachments:
        out.append("  (not on any selected tc hook)")
    for a in explanation.attachments:
        words = "|".join(a.effective) if a.effective is not None else "?"
        pref = f" pref {a.pref}" if a.pref is not None else ""
        out.append(f"  {shown(a.netns)} {shown(a.interface)} {a.hook}{pref} ({a.mode}): {words}")
    out += [
        "",
        "summary:",
        *textwrap.wrap(
            shown(explanation.summary), 88, initial_indent="  ", subsequent_indent="  "
        ),
    ]
    return "\n".join(out) + "\n"


@safe_text
def recommend_text(rec: Recommendation) -> str:
    """The short answer first (what to do, why, what to paste), details after."""
    from tabulate import tabulate

    title = {
        "keep": f"KEEP classifier_priority {rec.current_priority}",
        "set-priority": f"SET classifier_priority {rec.classifier_priority}",
        "disable-network": "DISABLE CWS network detections",
    }[rec.action]
    out = [title, "", *textwrap.wrap(shown(rec.summary), 88), ""]
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
            f"Alternative ({alternative.kind}): {shown(alternative.description)}",
            88,
            subsequent_indent="  ",
        )
    if rec.alternatives:
        out.append("")
    if rec.blind:
        rows = [
            [
                shown(b.where.netns),
                shown(b.where.interface),
                b.where.hook,
                b.culprit_hook,
                "" if b.pref is None else str(b.pref),
                shown(b.vendor or "unknown"),
                "yes" if b.fixable else "no",
                shown(b.reason if b.certain else f"(may) {b.reason}"),
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
            f"  {shown(n.netns)}: {n.blind}/{n.hooks}, {n.unfixable} unfixable"
            + (f"  [{shown(', '.join(n.vendors))}]" if n.vendors else "")
            for n in partial
        ]
        out.append("")
    warnings = [f for f in rec.findings if f.level == "warning"]
    if warnings:
        out.append("Warnings:")
        out += [f"  - {shown(f.message)}" for f in warnings[:20]]
        if len(warnings) > 20:
            out.append(f"  ... and {len(warnings) - 20} more (--format json lists them all)")
        out.append("")
    for agent in rec.cws_agents:
        state = "network on" if agent.network_enabled else "network OFF"
        out.append(
            f"system-probe pid {agent.pid} ({shown(agent.config_file or 'no config file')}): "
            f"classifier_priority {agent.classifier_priority} "
            f"({shown(agent.source('classifier_priority'))}), {state}"
        )
    if rec.cws_agents:
        out.append("")
    out += [f"Note: {shown(note)}" for note in rec.notes]
    return "\n".join(out) + "\n"


@safe_text
def check_text(rec: Recommendation, fail_on: str) -> str:
    bad = failing(rec.findings, fail_on)
    head = (
        f"FAIL: {len(bad)} finding(s) at or above '{fail_on}'"
        if bad
        else f"OK: nothing at or above '{fail_on}'"
    )
    lines = [head, ""]
    lines += [f"[{f.level}] {f.kind}: {shown(f.message)}" for f in rec.findings]
    if rec.findings:
        lines.append("")
    return "\n".join(lines) + recommend_text(rec)


@safe_text
def diff_text(changes: list[Change], fail_on: str) -> str:
    if not changes:
        return "no changes on any tc hook\n"
    bad = failing(changes, fail_on)
    head = f"{len(changes)} change(s); {len(bad)} at or above '{fail_on}'"
    lines = [head, ""]
    for c in changes:
        where = " ".join(shown(x) for x in (c.netns, c.interface, c.hook) if x)
        lines.append(f"[{c.level}] {c.kind:16} {where}: {shown(c.message)}")
    return "\n".join(lines) + "\n"


@safe_text
def merge_text(answer: ClusterAnswer) -> str:
    from tabulate import tabulate

    title = {
        "keep": f"KEEP classifier_priority {answer.current_priority}",
        "set-priority": f"SET classifier_priority {answer.classifier_priority} (cluster-wide)",
        "disable-network": "DISABLE CWS network detections (cluster-wide)",
    }[answer.action]
    rows = [
        [
            shown(n.node),
            n.recommendation.action,
            ""
            if n.recommendation.classifier_priority is None
            else str(n.recommendation.classifier_priority),
            shown(n.recommendation.summary[:90]),
        ]
        for n in answer.nodes
    ]
    out = [
        title,
        "",
        *textwrap.wrap(shown(answer.summary), 88),
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


@safe_text
def probe_text(result: ProbeResult) -> str:
    from tabulate import tabulate

    rows = [
        [
            shown(o.placement.netns.label),
            shown(o.placement.interface),
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
                shown(f"{c.interface} {c.hook} ({c.netns}): {c.message}"),
                92,
                initial_indent=f"{flag} ",
                subsequent_indent="     ",
            )
        out.append("")
    out += [f"note: {shown(note)}" for note in result.notes]
    return "\n".join(out) + "\n"


@safe_text
def cleanup_text(report: CleanupReport) -> str:
    out = [f"removed: {shown(item)}" for item in report.removed]
    out += [f"already gone: {shown(item)}" for item in report.gone]
    out += [f"left alone: {shown(item)}" for item in report.active]
    if not out:
        out = ["nothing to clean up: no observer was left behind"]
    return "\n".join(out) + "\n"


@safe_text
def watch_line(item: WatchEvent | WatchFinding) -> str:
    when = stamp(item.time)[11:]
    if isinstance(item, WatchFinding):
        return f"{when} FINDING {item.kind}: {shown(item.message)}"
    parts = [when, item.what, shown(item.netns)]
    if item.interface:
        parts.append(shown(item.interface))
    if item.hook:
        parts.append(item.hook)
    if item.pref is not None:
        parts.append(f"pref {item.pref} handle 0x{(item.handle or 0):x}")
    if item.filter_name:
        parts.append(shown(item.filter_name))
    if item.program is not None:
        parts.append(f"prog {item.program.id} {shown(item.program.name or '')}".rstrip())
    if item.vendor is not None:
        parts.append(f"[{shown(item.vendor.name)}]")
    if item.previous_vendor is not None or item.previous_program is not None:
        was = item.previous_vendor.name if item.previous_vendor else "unknown"
        parts.append(f"(was {was})")
    if item.actor is not None:
        parts.append(f"by {shown(item.actor.text())}")
    if item.note:
        parts.append(f"- {shown(item.note)}")
    return " ".join(parts)


@safe_text
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
        out += [f"  - {f.kind}: {shown(f.message)}" for f in summary.findings]
    else:
        out.append("no findings")
    return "\n".join(out) + "\n"


class TableFormat(Format):
    """``--format table``: the answers, for people."""

    def scan(self, scan: Scan, *, show_all: bool = False) -> str:
        return scan_table(scan, show_all=show_all)

    def explain(self, explanation: Explanation, *, code: bool = True) -> str:
        return explain_text(explanation, code=code)

    def recommend(self, rec: Recommendation) -> str:
        return recommend_text(rec)

    def check(self, rec: Recommendation, fail_on: str) -> str:
        return check_text(rec, fail_on)

    def diff(self, changes: list[Change], old: str, new: str, fail_on: str) -> str:
        return diff_text(changes, fail_on)

    def merge(self, answer: ClusterAnswer) -> str:
        return merge_text(answer)

    def probe(self, result: ProbeResult) -> str:
        return probe_text(result)

    def cleanup(self, report: CleanupReport) -> str:
        return cleanup_text(report)


class LinesFormat(Format):
    """``--format text`` (watch): one line per event or finding, the summary at the end."""

    def watch_item(self, item: WatchEvent | WatchFinding) -> str:
        return watch_line(item)

    def watch_summary(self, summary: WatchSummary) -> str:
        return watch_summary_text(summary)
