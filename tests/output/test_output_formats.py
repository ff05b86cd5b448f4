"""Every format renders every document it claims, through the one interface, and
refuses the others with a usage error; the CLI offers exactly those formats.

No root needed: the documents are hand-built (the node comes from the golden tests).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

import click
import pytest

from tcaudit.advice.diff import diff
from tcaudit.advice.explain import Attachment, Explanation, Line, ProgramListing, TailCallSite
from tcaudit.advice.merge import merge
from tcaudit.advice.recommend import recommend
from tcaudit.cli.main import cli
from tcaudit.errors import UsageError
from tcaudit.model import (
    CleanupReport,
    Conclusion,
    Counts,
    ObserverResult,
    Placement,
    Plan,
    ProbeResult,
    Skipped,
    WatchEvent,
    WatchFinding,
    WatchSummary,
)
from tcaudit.output.interface import DOCUMENTS, FORMATS, Format, formats_for, formatter
from tcaudit.output.layout import WIDE, Layout, cells
from tests.conftest import validate
from tests.output.test_golden import node, program

SCAN = node("node-set", 5)
REC = recommend(SCAN)
CILIUM = SCAN.namespaces[0].interfaces[0].hooks[0].entries[0]
NETNS = SCAN.namespaces[0].netns


def _explanation() -> Explanation:
    listing = ProgramListing(
        program=program(7, "cil_from_contai"),
        possible=(0, 2),
        reason=None,
        lines=(
            Line(0, "r0 = 0", function_start=True),
            Line(1, "exit", returns=(0, 2), ranges=((0, 0), (2, 2)), is_exit=True),
        ),
        subprograms=(0,),
        tail_calls=(TailCallSite(pc=0, map_id=70, index=1, targets=(8,)),),
        ranges=((0, 0), (2, 2)),
    )
    where = Attachment("host", "lxc1", "clsact/ingress", 5, 1, "direct-action", ("accept",))
    return Explanation(listing, (), (where,), "accepts or drops")


def _probe() -> ProbeResult:
    placement = Placement(NETNS, "lxc1", 3, "clsact/ingress", 4, ("before 5",), False)
    plan = Plan((placement,), (Skipped("pod", "eth0", "clsact/egress", "no clsact"),), (), 10)
    observer = ObserverResult(placement, 0, 0x7CA0, Counts(10, 980, 10), 10, "rx of lxc1", 1.0)
    conclusion = Conclusion("host", "lxc1", "clsact/ingress", CILIUM, 10, 0, 1.0, True, "ends it")
    return ProbeResult(plan, 2.0, (observer,), (conclusion,), ("a note",))


def _watch() -> tuple[WatchEvent, WatchFinding, WatchSummary]:
    event = WatchEvent(
        1.0, "host", 1, "filter-added", "lxc1", "clsact/ingress", 1, 1, "bpf",
        "cil_from_container-lxc1", CILIUM.program, CILIUM.vendor,
    )
    finding = WatchFinding(2.0, "hook-gap", "lxc1 was without Cilium's filter", "host")
    summary = WatchSummary(0.0, 3.0, Counter({"filter-added": 1}), [finding], 0, 0, 1)
    return event, finding, summary


def render(fmt: Format, document: str) -> list[str]:
    """Every call a command makes for ``document``, rendered by ``fmt``."""
    if document == "scan":
        return [fmt.scan(SCAN), fmt.scan(SCAN, show_all=True)]
    if document == "explain":
        return [fmt.explain(_explanation()), fmt.explain(_explanation(), code=False)]
    if document == "recommend":
        return [fmt.recommend(REC)]
    if document == "check":
        return [fmt.check(REC, "blind"), fmt.check(REC, "warning")]
    if document == "diff":
        return [fmt.diff(diff(SCAN, node("node-keep", 20)), "a.json", "b.json", "blind")]
    if document == "merge":
        return [fmt.merge(merge([("a", "a.json", SCAN), ("b", "b.json", node("b", 20))]))]
    if document == "probe":
        return [fmt.probe(_probe())]
    if document == "cleanup":
        return [fmt.cleanup(CleanupReport(("observer 1",), (), ()))]
    if document == "watch":
        event, finding, summary = _watch()
        return [fmt.watch_item(event), fmt.watch_item(finding), fmt.watch_summary(summary)]
    raise AssertionError(document)


PAIRS = [(name, doc) for name, (_, _, docs) in FORMATS.items() for doc in sorted(docs)]


@pytest.mark.parametrize(("name", "document"), PAIRS)
def test_each_format_renders_what_it_claims(name: str, document: str) -> None:
    outputs = render(formatter(name, pretty=False) if name == "json" else formatter(name),
                     document)
    for text in outputs:
        assert isinstance(text, str) and text.strip()
        if name == "json":
            doc = json.loads(text)
            # check is the recommendation plus fail_on/failed (docs/json.md)
            schema = "recommend" if document == "check" else document
            assert doc["schema"] == f"tcaudit/{schema}/v1"
            validate(doc)
        elif name == "jsonl":
            assert "\n" not in text.rstrip("\n")
            validate(json.loads(text))
        elif name == "junit":
            root = ET.fromstring(text)
            assert root.tag == "testsuites" and root.find("testsuite") is not None
        elif name == "markdown":
            assert text.startswith("### tcaudit check:")
    if name == "table" and document == "scan":
        assert "7 cil_from_contai" in outputs[0]  # 120 columns: no room for filter names
        assert "cil_from_container-lxc1" in formatter("table", layout=WIDE).scan(SCAN)


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_format_refuses_what_it_does_not_render(name: str) -> None:
    fmt = formatter(name)
    for document in set(DOCUMENTS) - FORMATS[name][2]:
        with pytest.raises(UsageError, match=f"--format {name} cannot render a {document}"):
            render(fmt, document)


def test_an_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--format yaml: not one of table, json"):
        formatter("yaml")


def test_every_document_has_a_format_and_the_cli_offers_exactly_those() -> None:
    offered: dict[str, list[str]] = {}
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option) and param.name == "fmt":
                assert isinstance(param.type, click.Choice)
                offered[command.name or ""] = list(param.type.choices)
    assert all(formats_for(d) for d in DOCUMENTS)
    expected: dict[str, Any] = {
        c: formats_for(c) for c in ("scan", "explain", "recommend", "check", "diff", "merge",
                                    "probe", "watch")
    }
    assert offered == expected
    assert offered["check"] == ["table", "json", "junit", "markdown"]


@pytest.mark.parametrize("width", [80, 100, 200])
def test_every_table_and_line_fits_the_width(width: int) -> None:
    """What --format table prints fits COLUMNS (explain's disassembly aside: code lines
    are not wrapped)."""
    fmt = formatter("table", layout=Layout(width=width))
    for document in sorted(FORMATS["table"][2] - {"explain"}):
        for text in render(fmt, document):
            for line in text.splitlines():
                assert cells(line) <= width, (document, line)
