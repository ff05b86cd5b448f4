"""The commands that read the node's hooks: scan, explain, recommend, check, snapshot
and bundle. Each takes the reading options, calls one core function and renders.

Only scan's modules are imported here at the top; the other commands import theirs when
they run (main.py says why).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tcaudit.cli.options import (
    ALL_OPTION,
    FAIL_ON,
    PRIORITY_OPTION,
    WIDE_OPTION,
    Reading,
    check_writable,
    chosen_format,
    emit,
    format_option,
    reading_options,
    warn,
    write_output,
)
from tcaudit.errors import UsageError
from tcaudit.kernel import privileges
from tcaudit.output.interface import formatter


@click.command(
    "scan",
    epilog="""\b
Examples:
  sudo tcaudit scan                          every namespace, every hook
  sudo tcaudit scan --netns self --dev eth0  one interface of the host namespace
  sudo tcaudit scan --netns pid:4242 --direction ingress
  sudo tcaudit scan --all --wide             every namespace and column in full
  sudo tcaudit scan --format json | jq '.namespaces[].interfaces[].hooks[].entries[]'
\b
The table leads with a summary, tells alike namespaces (the same hooks up to names and
ids) once and alike interfaces as one row set ("lxc1 +249"); anything unusual is listed
in full. !! marks what ends the chain ahead of CWS, ? what may. Columns fit COLUMNS, the
terminal, or 120 in a pipe; colour only on a terminal and never with NO_COLOR.
""",
)
@reading_options
@format_option("scan", "table for people, json (tcaudit/scan/v1) for tools.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Table: every namespace, interface and hook in full, empty ones too (default: "
    "alike ones told once).",
)
@WIDE_OPTION
def scan_cmd(reading: Reading, fmt: str, show_all: bool, wide: bool) -> None:
    """Inventory every tc hook (TCX and clsact) on every interface in every namespace,
    with each classifier's verdict and vendor.

    Read-only: tcaudit changes nothing while scanning. Entries are listed in the order the
    kernel runs them: TCX programs first, then clsact filters by ascending pref, and within
    one pref the most recently added first.
    """
    from tcaudit.pipeline import inventory

    privileges.require("scan")
    result = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(result.warnings)
    emit(chosen_format(fmt, wide=wide).scan(result, show_all=show_all))


@click.command(
    "explain",
    epilog="""\b
Examples:
  sudo tcaudit explain 812
  sudo tcaudit explain --netns self --dev lxc12ab --hook clsact/ingress --pref 1
  sudo tcaudit explain --netns pid:4242 --dev eth0 --hook tcx/ingress --position 1
  sudo tcaudit explain 812 --format json | jq .summary
""",
)
@click.argument("prog_id", type=int, required=False)
@reading_options
@click.option("--pref", type=click.IntRange(0, 0xFFFF), help="clsact: the filter's pref.")
@click.option("--position", type=click.IntRange(1), help="The entry's 1-based place in run order.")
@format_option("explain", "table: annotated disassembly; json: tcaudit/explain/v1.")
@WIDE_OPTION
def explain_cmd(
    prog_id: int | None,
    reading: Reading,
    pref: int | None,
    position: int | None,
    fmt: str,
    wide: bool,
) -> None:
    """Show one program's bytecode with what each exit returns, its tail-call targets
    (recursively), where it is attached, and a summary to paste into a ticket.

    Name it by PROG_ID (as `tcaudit scan` shows it), or by --netns/--dev/--hook and
    --pref (clsact) or --position (TCX). Read-only.
    """
    from tcaudit.advice.explain import explain_selected

    privileges.require("explain")
    result = explain_selected(reading.selection, prog_id, pref=pref, position=position)
    warn(result.warnings)
    emit(chosen_format(fmt, wide=wide).explain(result))


@click.command(
    "recommend",
    short_help="The classifier_priority CWS should use, or: disable its network detections.",
    epilog="""\b
Examples:
  sudo tcaudit recommend                     the answer for this node
  sudo tcaudit recommend --priority 5        is priority 5 safe here?
  sudo tcaudit recommend --format json | jq '{action, classifier_priority}'
  sudo tcaudit recommend --format json -o /var/lib/tcaudit/recommend.json
""",
)
@reading_options
@PRIORITY_OPTION
@format_option("recommend", "table: the answer first; json: tcaudit/recommend/v1.")
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the answer to this file (atomically, 0644) instead of stdout: what the "
    "Datadog Agent check reads (json).",
)
@ALL_OPTION
@WIDE_OPTION
def recommend_cmd(
    reading: Reading, priority: int | None, fmt: str, output: str, show_all: bool, wide: bool
) -> None:
    """What to set runtime_security_config.network.classifier_priority to — or that CWS
    network detections must be disabled — with the evidence and ready-to-paste settings.

    Evaluates every hook CWS attaches to (every interface in every selected namespace,
    ingress and egress). Read-only.
    """
    from tcaudit.advice.recommend import recommend
    from tcaudit.pipeline import inventory

    privileges.require("recommend")
    check_writable(output)
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    from tcaudit.inventory.cws_agents import running_agents

    result = recommend(scan, priority=priority, agents=running_agents())
    shown = chosen_format(fmt, wide=wide, to_file=output != "-")
    write_output(output, shown.recommend(result, show_all=show_all))


@click.command(
    "check",
    epilog="""\b
Exit status: 0 nothing at or above --fail-on, 1 findings at or above it,
2 usage, 3 environment (not root).
\b
Levels: blind = CWS cannot see accepted or redirected traffic on some hook;
warning = blind, plus unknown verdicts or drop-only classifiers ahead of CWS,
pref collisions, vendors with destructive habits, CWS filters missing on hooks.
\b
Examples:
  sudo tcaudit check                                   fail when a hook is blind
  sudo tcaudit check --fail-on warning --format junit > tcaudit.xml
  sudo tcaudit check --priority 10 --format markdown >> "$GITHUB_STEP_SUMMARY"
""",
)
@reading_options
@PRIORITY_OPTION
@click.option(
    "--fail-on",
    type=FAIL_ON,
    default="blind",
    show_default=True,
    help="Lowest finding level that makes the exit status 1.",
)
@format_option("check", "Report format.")
@ALL_OPTION
@WIDE_OPTION
def check_cmd(
    reading: Reading, priority: int | None, fail_on: str, fmt: str, show_all: bool, wide: bool
) -> int:
    """A CI gate: the recommendation's findings, with an exit status."""
    from tcaudit.advice.recommend import recommend
    from tcaudit.output.interface import failing
    from tcaudit.pipeline import inventory

    privileges.require("check")
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    from tcaudit.inventory.cws_agents import running_agents

    result = recommend(scan, priority=priority, agents=running_agents())
    emit(chosen_format(fmt, wide=wide).check(result, fail_on, show_all=show_all))
    return 1 if failing(result.findings, fail_on) else 0


@click.command(
    "snapshot",
    epilog="""\b
Examples:
  sudo tcaudit snapshot -o before.json          before a CNI upgrade
  sudo tcaudit snapshot -o after.json && tcaudit diff before.json after.json
""",
)
@reading_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="File to write (tcaudit/scan/v1 with verdicts and vendors); - for stdout.",
)
def snapshot_cmd(reading: Reading, output: str) -> None:
    """Save the whole inventory, with verdicts and vendors, for diff and merge."""
    from tcaudit.pipeline import inventory

    privileges.require("snapshot")
    check_writable(output)
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    write_output(output, formatter("json", pretty=True).scan(scan))


@click.command(
    "bundle",
    epilog="""\b
Examples:
  sudo tcaudit bundle -o tcaudit-node1.tar.gz            lists the files, then asks
  sudo tcaudit bundle -o /tmp/b.tar.gz --yes --netns self
\b
Never includes map contents, packet data or environment variables; interface
addresses only with --include-addresses. Without a terminal, --yes is required.
""",
)
@reading_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The archive to write (.tar.gz).",
)
@click.option("--yes", is_flag=True, help="Do not ask before writing (for automation).")
@click.option("--include-addresses", is_flag=True, help="Add the interfaces' IPv4 addresses.")
def bundle_cmd(reading: Reading, output: str, yes: bool, include_addresses: bool) -> int:
    """Gather the tc evidence support needs into one archive: inventory, verdicts,
    vendors, recommendation, an explain of every foreign program, the raw netlink view,
    TCX queries, kernel config, the CWS settings in effect. Lists it first and asks."""
    from tcaudit.bundle import collect, write

    privileges.require("bundle")
    check_writable(output)  # before collecting anything
    command = [
        "bundle",
        "-o",
        output,
        *(["--yes"] if yes else []),
        *(["--include-addresses"] if include_addresses else []),
        *(arg for ns in reading.selection.netns for arg in ("--netns", ns)),
        *(arg for dev in reading.selection.devs for arg in ("--dev", dev)),
    ]
    bundle = collect(
        reading.selection,
        vendor_files=reading.vendor_files,
        include_addresses=include_addresses,
        argv=command,
    )
    click.echo(f"{output} will hold:", err=True)
    for name, size in bundle.listing():
        click.echo(f"  {size:9,d}  {name}", err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"not writing {output}: there is no terminal to confirm on; "
                "review the list above and run again with --yes"
            )
        if not click.confirm(f"Write {output}?", default=False, err=True):
            click.echo("nothing written", err=True)
            return 0
    write(bundle, output)
    click.echo(f"wrote {output} ({Path(output).stat().st_size:,d} bytes)", err=True)
    return 0
