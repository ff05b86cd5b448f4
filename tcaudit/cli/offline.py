"""The commands that work on saved snapshots, without reading the node: diff (two
snapshots compared) and merge (one cluster-wide answer from every node's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from tcaudit.cli.options import FAIL_ON, WIDE_OPTION, chosen_format, emit, format_option


def _load_snapshot(path: str, vendor_files: Sequence[str]) -> Any:
    from tcaudit.inventory.snapshot import read_document, scan_from_json
    from tcaudit.output.json_format import SCAN_SCHEMA
    from tcaudit.vendors.attribution import add_vendors
    from tcaudit.vendors.registry import load_registry

    doc = read_document(path, SCAN_SCHEMA)
    return doc, add_vendors(scan_from_json(doc), load_registry(vendor_files))


@click.command(
    "diff",
    epilog="""\b
Exit status: 1 when a change is at or above --fail-on (blind: a hook where CWS,
at the old snapshot's priority, is now blind; warning: any change to a chain).
\b
Examples:
  tcaudit diff before.json after.json
  tcaudit diff before.json after.json --fail-on warning --format json
""",
)
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option(
    "--fail-on",
    type=FAIL_ON,
    default="blind",
    show_default=True,
    help="Lowest change level that makes the exit status 1.",
)
@click.option(
    "--vendors",
    "vendor_files",
    multiple=True,
    metavar="FILE",
    help="Extra vendor fingerprints. Repeatable.",
)
@format_option("diff", "table, or json (tcaudit/diff/v1).")
@WIDE_OPTION
def diff_cmd(
    old: str, new: str, fail_on: str, vendor_files: tuple[str, ...], fmt: str, wide: bool
) -> int:
    """What changed on the tc hooks between two snapshots: filters added, removed, moved,
    replaced, verdicts and vendor versions changed, TCX programs appearing."""
    from tcaudit.advice.diff import diff
    from tcaudit.output.interface import failing

    _, before = _load_snapshot(old, vendor_files)
    _, after = _load_snapshot(new, vendor_files)
    changes = diff(before, after)
    emit(chosen_format(fmt, wide=wide).diff(changes, old, new, fail_on))
    return 1 if failing(changes, fail_on) else 0


@click.command(
    "merge",
    epilog="""\b
Examples:
  tcaudit merge snapshots/*.json
  tcaudit merge node-a.json node-b.json --format json | jq .classifier_priority
""",
)
@click.argument("snapshots", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--vendors",
    "vendor_files",
    multiple=True,
    metavar="FILE",
    help="Extra vendor fingerprints. Repeatable.",
)
@format_option("merge", "table, or json (tcaudit/merge/v1).")
@WIDE_OPTION
def merge_cmd(
    snapshots: tuple[str, ...], vendor_files: tuple[str, ...], fmt: str, wide: bool
) -> None:
    """One cluster-wide answer from every node's snapshot: the priority that works on
    all of them, or the nodes that force disabling network detections and why."""
    from tcaudit.advice.merge import merge

    nodes = []
    seen: set[str] = set()
    for path in snapshots:
        doc, scan = _load_snapshot(path, vendor_files)
        name = doc["host"]["hostname"]
        if name in seen:
            name = f"{name} ({Path(path).name})"
        seen.add(name)
        nodes.append((name, path, scan))
    answer = merge(nodes)
    emit(chosen_format(fmt, wide=wide).merge(answer))
