"""The text format: tables and lines for people (``--format table``, watch's ``text``).

Every command's answer comes first and the details after. ``TableFormat(layout=...)``
fits every table to the room the CLI found (layout.py: the terminal's width, ``COLUMNS``,
120 in a pipe, unlimited with ``--wide``; colour only on a terminal). The scan's tables
are in text_scan.py, the recommendation's and the check's in text_recommend.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcaudit.analysis.meaning import ranges_text, verdict_names
from tcaudit.model import (
    CleanupReport,
    ProbeResult,
    Scan,
    WatchEvent,
    WatchFinding,
    WatchSummary,
)
from tcaudit.output.interface import Format, failing, stamp
from tcaudit.output.layout import PIPED, Layout, paint, wrap
from tcaudit.output.sanitize import safe_text, shown
from tcaudit.output.table import Column, draw
from tcaudit.output.text_recommend import (
    LEVEL_STYLE,
    TITLES,
    check_text,
    fit_lines,
    recommend_text,
)
from tcaudit.output.text_scan import scan_table

if TYPE_CHECKING:  # the answers' types: `tcaudit scan` need not import the advice layer
    from tcaudit.advice.diff import Change
    from tcaudit.advice.explain import Explanation, ProgramListing
    from tcaudit.advice.merge import ClusterAnswer
    from tcaudit.advice.recommend import Recommendation

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
def explain_text(explanation: Explanation, *, code: bool = True, layout: Layout = PIPED) -> str:
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
        *wrap(shown(explanation.summary), layout.prose, indent="  ", subsequent="  "),
    ]
    return "\n".join(out) + "\n"


@safe_text
def diff_text(changes: list[Change], fail_on: str, *, layout: Layout = PIPED) -> str:
    if not changes:
        return "no changes on any tc hook\n"
    bad = failing(changes, fail_on)
    head = f"{len(changes)} change(s); {len(bad)} at or above '{fail_on}'"
    lines = [head, ""]
    for c in changes:
        where = " ".join(shown(x) for x in (c.netns, c.interface, c.hook) if x)
        tag = paint(f"[{c.level}]", LEVEL_STYLE.get(c.level, "dim"))
        lines += wrap(
            f"{where}: {shown(c.message)}",
            layout.width,
            indent=f"{tag} {c.kind:16} ",
            subsequent="    ",
        )
    return "\n".join(lines) + "\n"


MERGE_COLUMNS = (
    Column("node", shrink=12, soft=20),
    Column("action"),
    Column("priority", right=True),
    Column("why", shrink=24, soft=40, cut="end"),
)


@safe_text
def merge_text(answer: ClusterAnswer, *, layout: Layout = PIPED) -> str:
    word, style = TITLES[answer.action]
    title = paint(word, style, "bold") + {
        "keep": f" classifier_priority {answer.current_priority}",
        "set-priority": f" classifier_priority {answer.classifier_priority} (cluster-wide)",
        "disable-network": " CWS network detections (cluster-wide)",
    }[answer.action]
    rows = [
        [
            shown(n.node),
            n.recommendation.action,
            ""
            if n.recommendation.classifier_priority is None
            else str(n.recommendation.classifier_priority),
            shown(n.recommendation.summary),
        ]
        for n in answer.nodes
    ]
    table = draw(MERGE_COLUMNS, rows, layout)
    out = [
        title,
        "",
        *wrap(shown(answer.summary), layout.prose),
        "",
        table.text,
        "",
    ]
    if answer.action != "keep":
        out += [
            "Helm values:",
            *("  " + line for line in answer.snippets["helm_values"].splitlines()),
            "",
        ]
    return "\n".join([*out, *fit_lines([table], layout)]) + "\n"


PROBE_COLUMNS = (
    Column("netns", shrink=10, soft=20),
    Column("interface", shrink=9),
    Column("hook"),
    Column("pref", right=True),
    Column("observer", shrink=10, soft=16),
    Column("packets", right=True),
    Column("reference", right=True, drop=1),
    Column("reference is", shrink=12, soft=16, drop=2),
    Column("pass", right=True),
)


@safe_text
def probe_text(result: ProbeResult, *, layout: Layout = PIPED) -> str:
    rows = [
        [
            shown(o.placement.netns.label),
            shown(o.placement.interface),
            o.placement.hook,
            o.placement.pref,
            ", ".join(o.placement.roles) + (" (shared pref)" if o.placement.shares else ""),
            o.counts.packets,
            o.reference_packets if o.reference_packets is not None else "-",
            shown(o.reference),
            "-" if o.pass_ratio is None else f"{o.pass_ratio:.0%}",
        ]
        for o in result.observers
    ]
    table = draw(PROBE_COLUMNS, rows, layout)
    out = [f"observed for {result.duration:.1f} s", "", table.text, ""]
    if result.conclusions:
        out.append("What the traffic showed:")
        for c in result.conclusions:
            flag = "!!" if c.agrees is False else "  "
            out += wrap(
                shown(f"{c.interface} {c.hook} ({c.netns}): {c.message}"),
                min(92, layout.width or 92),
                indent=f"{flag} ",
                subsequent="     ",
            )
        out.append("")
    for note in result.notes:
        out += wrap(f"note: {shown(note)}", layout.width, subsequent="  ")
    return "\n".join([*out, *fit_lines([table], layout)]) + "\n"


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
    """``--format table``: the answers, for people, in the room ``layout`` gives."""

    def __init__(self, *, layout: Layout = PIPED) -> None:
        self.layout = layout

    def scan(self, scan: Scan, *, show_all: bool = False) -> str:
        return scan_table(scan, show_all=show_all, layout=self.layout)

    def explain(self, explanation: Explanation, *, code: bool = True) -> str:
        return explain_text(explanation, code=code, layout=self.layout)

    def recommend(self, rec: Recommendation, *, show_all: bool = False) -> str:
        return recommend_text(rec, show_all=show_all, layout=self.layout)

    def check(self, rec: Recommendation, fail_on: str, *, show_all: bool = False) -> str:
        return check_text(rec, fail_on, show_all=show_all, layout=self.layout)

    def diff(self, changes: list[Change], old: str, new: str, fail_on: str) -> str:
        return diff_text(changes, fail_on, layout=self.layout)

    def merge(self, answer: ClusterAnswer) -> str:
        return merge_text(answer, layout=self.layout)

    def probe(self, result: ProbeResult) -> str:
        return probe_text(result, layout=self.layout)

    def cleanup(self, report: CleanupReport) -> str:
        return cleanup_text(report)


class LinesFormat(Format):
    """``--format text`` (watch): one line per event or finding, the summary at the end."""

    def watch_item(self, item: WatchEvent | WatchFinding) -> str:
        return watch_line(item)

    def watch_summary(self, summary: WatchSummary) -> str:
        return watch_summary_text(summary)
