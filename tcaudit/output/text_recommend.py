"""``tcaudit recommend`` and ``check`` as text: the short answer first (what to do, each
culprit's cause with its count of hooks, what to paste), the details after, tables
fitted to the terminal (table.py).

Without ``--all``, alike rows are shown once with a count: blind hooks with the same CWS
hook, culprit hook, pref, vendor, cause and verdict (``lxc0 +249``), namespaces with the
same counts and vendors, per-hook findings of one kind, vendor and pref. Findings that
only *may* hide (unknown verdicts) and look-alikes of CWS are never grouped.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Final

from tcaudit.advice.overview import ALIKE  # one rule for what is "alike" in every table
from tcaudit.output.interface import LEVELS, failing
from tcaudit.output.layout import PIPED, Layout, paint, wrap
from tcaudit.output.sanitize import safe_text, shown
from tcaudit.output.table import Cell, Column, Drawn, collapse, draw, fit_note

if TYPE_CHECKING:  # the answer's types: rendering it needs nothing else from advice
    from tcaudit.advice.recommend import BlindSpot, Finding, NamespaceSummary, Recommendation

BLIND_COLUMNS: Final = (
    Column("netns", shrink=8, soft=20),
    Column("interface", shrink=9),
    Column("cws hook"),
    Column("culprit on", drop=1),
    Column("pref", right=True),
    Column("vendor", shrink=10, cut="end"),
    Column("fixable"),
    Column("why", shrink=12, soft=30, cut="end"),
)
TITLES: Final = {
    "keep": ("KEEP", "green"),
    "set-priority": ("SET", "yellow"),
    "disable-network": ("DISABLE", "red"),
}
LEVEL_STYLE: Final = {"blind": "red", "warning": "yellow"}
GROUPED_KINDS: Final = frozenset({"blind", "drop-only", "pref-collision"})
MAX_WARNINGS: Final = 20


def title(rec: Recommendation) -> str:
    word, style = TITLES[rec.action]
    rest = {
        "keep": f" classifier_priority {rec.current_priority}",
        "set-priority": f" classifier_priority {rec.classifier_priority}",
        "disable-network": " CWS network detections",
    }[rec.action]
    return paint(word, style, "bold") + rest


def _spot_key(spot: BlindSpot) -> Hashable | None:
    if not spot.certain:
        return None  # may hide: each one listed
    return (
        spot.where.hook,
        spot.culprit_hook,
        spot.pref,
        spot.vendor,
        spot.fixable,
        spot.cause,
        spot.verbs,
    )


def _count(members: Sequence[BlindSpot]) -> tuple[int, int]:
    """(more namespaces, more hooks) a group holds beside its first member."""
    namespaces = {b.where.netns_id for b in members}
    return len(namespaces) - 1, len(members) - 1


def blind_rows(blind: Sequence[BlindSpot], show_all: bool) -> tuple[list[list[Cell | str]], bool]:
    """The blind table's rows; True when some row stands for several hooks."""
    groups = [[b] for b in blind] if show_all else collapse(blind, _spot_key, ALIKE)
    rows: list[list[Cell | str]] = []
    for members in groups:
        first = members[0]
        more_ns, more_hooks = _count(members)
        rows.append(
            [
                Cell(shown(first.where.netns), keep=f" +{more_ns}" if more_ns else ""),
                Cell(shown(first.where.interface), keep=f" +{more_hooks}" if more_hooks else ""),
                first.where.hook,
                first.culprit_hook,
                "" if first.pref is None else str(first.pref),
                shown(first.vendor or "unknown"),
                "yes" if first.fixable else "no",
                shown(first.reason if first.certain else f"(may) {first.reason}"),
            ]
        )
    return rows, any(len(g) > 1 for g in groups)


def _namespace_key(summary: NamespaceSummary) -> Hashable:
    return (summary.hooks, summary.blind, summary.unfixable, summary.vendors)


def fit_lines(drawn: Sequence[Drawn], layout: Layout) -> list[str]:
    """What the tables left out to fit, wrapped (nothing when they fit)."""
    note = fit_note(drawn, layout)
    return wrap(note, layout.width) if note else []


def namespace_lines(partial: Sequence[NamespaceSummary], show_all: bool) -> list[str]:
    groups = [[n] for n in partial] if show_all else collapse(partial, _namespace_key, ALIKE)
    out = []
    for members in groups:
        n = members[0]
        alike = f" and {len(members) - 1} alike" if len(members) > 1 else ""
        out.append(
            f"{shown(n.netns)}{alike}: {n.blind}/{n.hooks}, {n.unfixable} unfixable"
            + (f"  [{shown(', '.join(n.vendors))}]" if n.vendors else "")
        )
    return out


def _finding_key(finding: Finding) -> Hashable | None:
    if finding.where is None or finding.kind not in GROUPED_KINDS:
        return None
    return (finding.level, finding.kind, finding.where.hook, finding.pref, finding.vendor)


def finding_lines(
    findings: Sequence[Finding],
    show_all: bool,
    layout: Layout,
    prefix: str = "",
    limit: int | None = None,
) -> tuple[list[str], int]:
    """One (wrapped) line per finding, or per group of alike ones with their count; at
    most ``limit`` of them, and how many findings were left out."""
    groups = [[f] for f in findings] if show_all else collapse(findings, _finding_key, ALIKE)
    if limit is not None and not show_all:
        left = sum(len(g) for g in groups[limit:])
        groups = groups[:limit]
    else:
        left = 0
    out: list[str] = []
    for members in groups:
        first = members[0]
        text = f"{first.kind}: {shown(first.message)}"
        if len(members) > 1:
            spaces = {f.where.netns_id for f in members if f.where is not None}
            where = f" in {len(spaces)} namespaces" if len(spaces) > 1 else ""
            text += f" (and {len(members) - 1} more hooks alike{where}; --all lists each)"
        tag = paint(f"[{first.level}]", LEVEL_STYLE.get(first.level, "dim"))  # words unchanged
        out += wrap(f"{tag} {text}", layout.width, indent=prefix, subsequent=prefix + "    ")
    return out, left


def _render(rec: Recommendation, show_all: bool, layout: Layout, drawn: list[Drawn]) -> list[str]:
    out = [title(rec), "", *wrap(shown(rec.summary), layout.prose), ""]
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
        out += wrap(  # at spaces only: a setting stays whole, ready to paste
            f"Alternative ({alternative.kind}): {shown(alternative.description)}",
            layout.prose,
            subsequent="  ",
        )
    if rec.alternatives:
        out.append("")
    if rec.blind:
        rows, grouped = blind_rows(rec.blind, show_all)
        table = draw(BLIND_COLUMNS, rows, layout)
        drawn.append(table)
        out += [f"Blind at priority {rec.current_priority}:", table.text]
        if grouped:
            out += wrap(
                "(+N: that many more namespaces or hooks alike: the same hooks, culprit, "
                "pref, vendor and cause; --all lists each)",
                layout.width,
            )
        out.append("")
    partial = [n for n in rec.namespaces if n.blind]
    if partial:
        out.append("Per namespace (blind / hooks, of which no priority fixes):")
        out += [
            part
            for line in namespace_lines(partial, show_all)
            for part in wrap(line, layout.width, indent="  ", subsequent="      ")
        ]
        out.append("")
    warnings = [f for f in rec.findings if f.level == "warning"]
    if warnings:
        out.append("Warnings:")
        lines, left = finding_lines(warnings, show_all, layout, prefix="  ", limit=MAX_WARNINGS)
        out += lines
        if left:
            out.append(f"  ... and {left} more (--all or --format json lists them all)")
        out.append("")
    for agent in rec.cws_agents:
        state = "network on" if agent.network_enabled else "network OFF"
        out += wrap(
            f"system-probe pid {agent.pid} ({shown(agent.config_file or 'no config file')}): "
            f"classifier_priority {agent.classifier_priority} "
            f"({shown(agent.source('classifier_priority'))}), {state}",
            layout.width,
            subsequent="  ",
        )
    if rec.cws_agents:
        out.append("")
    for note in rec.notes:
        out += wrap(f"Note: {shown(note)}", layout.width, subsequent="  ")
    return out


@safe_text
def recommend_text(
    rec: Recommendation, *, show_all: bool = False, layout: Layout = PIPED
) -> str:
    """The short answer first (what to do, why, what to paste), details after."""
    drawn: list[Drawn] = []
    out = _render(rec, show_all, layout, drawn)
    return "\n".join([*out, *fit_lines(drawn, layout)]) + "\n"


def check_head(rec: Recommendation, fail_on: str, width: int | None = None) -> list[str]:
    """FAIL (or OK) with each culprit's cause and count of hooks at or above ``fail_on``."""
    from tcaudit.advice.causes import phrase

    bad = failing(rec.findings, fail_on)
    if not bad:
        return [f"{paint('OK', 'green', 'bold')}: nothing at or above '{fail_on}'"]
    head = [f"{paint('FAIL', 'red', 'bold')}: {len(bad)} finding(s) at or above '{fail_on}'"]
    threshold = LEVELS[fail_on]
    for cause in rec.causes:
        if LEVELS[cause.level] >= threshold:
            head += wrap(shown(phrase(cause)), width, indent="  ", subsequent="      ")
    return head


@safe_text
def check_text(
    rec: Recommendation, fail_on: str, *, show_all: bool = False, layout: Layout = PIPED
) -> str:
    lines = [*check_head(rec, fail_on, layout.width), ""]
    lines += finding_lines(rec.findings, show_all, layout)[0]
    if rec.findings:
        lines.append("")
    drawn: list[Drawn] = []
    lines += _render(rec, show_all, layout, drawn)
    return "\n".join([*lines, *fit_lines(drawn, layout)]) + "\n"
