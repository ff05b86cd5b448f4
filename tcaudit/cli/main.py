"""Command line: parse options, call one core function per command, render, map errors.

Exit codes (contracts.md): 0 done, 1 findings / failed self-test step, 2 usage, 3
environment, 130 interrupted. An unexpected crash exits 70 with one line (set
TCAUDIT_DEBUG=1 for the traceback), so a crash is never mistaken for findings.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from tcaudit import __version__
from tcaudit.cli.options import (
    FAIL_ON,
    PRIORITY_OPTION,
    SELECTOR_HELP,
    Reading,
    emit,
    format_option,
    parse_duration,
    reading_options,
    warn,
)
from tcaudit.errors import TcauditError, UsageError
from tcaudit.kernel import privileges
from tcaudit.output.render import SCAN_SCHEMA, dumps, scan_json, scan_table
from tcaudit.pipeline import inventory

# Commands other than scan import their modules when they run: `tcaudit scan` is the
# one people loop over, and its start-up time is part of its speed target.

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_CRASH = 70


class Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C, so every `finally` removes what was added."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Run 'tcaudit COMMAND --help' for a command's options and examples.",
)
@click.version_option(__version__, prog_name="tcaudit")
def cli() -> None:
    """Which eBPF tc classifiers run on this node's hooks, in what order, what they hide
    from later ones, and what classifier_priority Datadog CWS should use."""


@cli.command(
    "scan",
    epilog="""\b
Examples:
  sudo tcaudit scan                          every namespace, every hook
  sudo tcaudit scan --netns self --dev eth0  one interface of the host namespace
  sudo tcaudit scan --netns pid:4242 --direction ingress
  sudo tcaudit scan --format json | jq '.namespaces[].interfaces[].hooks[].entries[]'
""",
)
@reading_options
@format_option(["table", "json"], "table for people, json (tcaudit/scan/v1) for tools.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Table: also show interfaces and hooks with no classifiers.",
)
def scan_cmd(reading: Reading, fmt: str, show_all: bool) -> None:
    """Inventory every tc hook (TCX and clsact) on every interface in every namespace,
    with each classifier's verdict and vendor.

    Read-only: tcaudit changes nothing while scanning. Entries are listed in the order the
    kernel runs them: TCX programs first, then clsact filters by ascending pref, and within
    one pref the most recently added first.
    """
    privileges.require("scan")
    result = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(result.warnings)
    emit(scan_json(result) if fmt == "json" else scan_table(result, show_all=show_all))


@cli.command(
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
@format_option(["table", "json"], "table: annotated disassembly; json: tcaudit/explain/v1.")
def explain_cmd(
    prog_id: int | None, reading: Reading, pref: int | None, position: int | None, fmt: str
) -> None:
    """Show one program's bytecode with what each exit returns, its tail-call targets
    (recursively), where it is attached, and a summary to paste into a ticket.

    Name it by PROG_ID (as `tcaudit scan` shows it), or by --netns/--dev/--hook and
    --pref (clsact) or --position (TCX). Read-only.
    """
    from tcaudit.advice.explain import explain_selected
    from tcaudit.output.render import explain_json, explain_text

    privileges.require("explain")
    result = explain_selected(reading.selection, prog_id, pref=pref, position=position)
    warn(result.warnings)
    emit(explain_json(result) if fmt == "json" else explain_text(result))


@cli.command(
    "recommend",
    short_help="The classifier_priority CWS should use, or: disable its network detections.",
    epilog="""\b
Examples:
  sudo tcaudit recommend                     the answer for this node
  sudo tcaudit recommend --priority 5        is priority 5 safe here?
  sudo tcaudit recommend --format json | jq '{action, classifier_priority}'
""",
)
@reading_options
@PRIORITY_OPTION
@format_option(["table", "json"], "table: the answer first; json: tcaudit/recommend/v1.")
def recommend_cmd(reading: Reading, priority: int | None, fmt: str) -> None:
    """What to set runtime_security_config.network.classifier_priority to — or that CWS
    network detections must be disabled — with the evidence and ready-to-paste settings.

    Evaluates every hook CWS attaches to (every interface in every selected namespace,
    ingress and egress). Read-only.
    """
    from tcaudit.advice.recommend import recommend
    from tcaudit.output.reports import recommend_json, recommend_text

    privileges.require("recommend")
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    result = recommend(scan, priority=priority)
    emit(recommend_json(result) if fmt == "json" else recommend_text(result))


@cli.command(
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
@format_option(["table", "json", "junit", "markdown"], "Report format.")
def check_cmd(reading: Reading, priority: int | None, fail_on: str, fmt: str) -> int:
    """A CI gate: the recommendation's findings, with an exit status."""
    from tcaudit.advice.recommend import recommend
    from tcaudit.output.reports import check_json, check_junit, check_markdown, check_text, failing

    privileges.require("check")
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    result = recommend(scan, priority=priority)
    renderers: dict[str, Callable[[Any, str], Any]] = {
        "table": check_text,
        "json": check_json,
        "junit": check_junit,
        "markdown": check_markdown,
    }
    emit(renderers[fmt](result, fail_on))
    return 1 if failing(result.findings, fail_on) else 0


@cli.command(
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
    privileges.require("snapshot")
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    text = dumps(scan_json(scan), pretty=True)
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(target)  # never a half-written snapshot
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"-o {output}: cannot write it: {err.strerror}") from None


@cli.command(
    "probe",
    epilog="""\b
Examples:
  sudo tcaudit probe --netns self --dev lxc12ab --duration 30s
  sudo tcaudit probe --netns self --dev eth0 --hook clsact/ingress --at 2 --at 11
  sudo tcaudit probe --netns lab:cilium-1.9 --generate --format json
  sudo tcaudit probe --cleanup            remove observers a killed probe left behind
\b
Observers are cls_bpf filters named tcaudit_probe_<slot> that always return
TC_ACT_UNSPEC: they never change a packet's fate. They are added create-only at free
prefs (or prefs shared only with bpf filters of protocol all, where they run first),
never on a node hook without a clsact qdisc, and removed on exit, Ctrl-C or SIGTERM.
""",
)
@reading_options
@click.option(
    "--at",
    "at",
    multiple=True,
    type=click.IntRange(1, 0xFFFF),
    metavar="PREF",
    help="Observe at these prefs instead of the default placement. Repeatable.",
)
@click.option(
    "--duration",
    default="10s",
    show_default=True,
    metavar="TIME",
    help="How long to count: 10s, 500ms, 2m.",
)
@click.option(
    "--generate",
    is_flag=True,
    help="Send test UDP traffic between the selected interfaces' own addresses "
    "(for lab namespaces and selftest; off by default on real hooks).",
)
@PRIORITY_OPTION
@click.option(
    "--cleanup",
    "do_cleanup",
    is_flag=True,
    help="Remove observers left by a probe that was killed, and exit.",
)
@format_option(["table", "json"], "table, or json (tcaudit/probe/v1).")
def probe_cmd(
    reading: Reading,
    at: tuple[int, ...],
    duration: str,
    generate: bool,
    priority: int | None,
    do_cleanup: bool,
    fmt: str,
) -> None:
    """Count what really reaches chosen prefs of live clsact hooks: one observer at the
    CWS priority and one just before and after each foreign classifier, so each gets a
    verdict from traffic ("hands packets on" / "ends the chain for N%"), set beside the
    static one from its bytecode."""
    from tcaudit.live import probe
    from tcaudit.live.observer import Observer
    from tcaudit.output.reports import cleanup_text, probe_json, probe_text

    privileges.require("probe")
    if do_cleanup:
        emit(cleanup_text(probe.cleanup()))
        return
    seconds = parse_duration(duration)
    if all(h.startswith("tcx/") for h in reading.selection.hooks):
        raise click.BadParameter(
            "observers attach to clsact hooks; TCX programs are seen through them",
            param_hint="--hook",
        )
    scan = inventory(
        reading.selection, vendor_files=reading.vendor_files, use_cache=reading.use_cache
    )
    warn(scan.warnings)
    where = probe.plan(scan, at=at, priority=priority)
    for skipped in where.skipped:
        warn([f"{skipped.netns} {skipped.interface} {skipped.hook}: {skipped.reason}"])
    with Observer() as observer:
        if not sys.stderr.isatty():  # no progress bar in logs and pipes
            result = probe.run(where, observer, seconds, generate=generate)
        else:
            steps = max(1, int(seconds * 10))
            with click.progressbar(
                length=steps, label="observing", file=sys.stderr, show_eta=True, show_percent=False
            ) as bar:
                done = [0]

                def tick(elapsed: float, seen: int) -> None:
                    now = min(steps, int(elapsed * 10))
                    bar.label = f"observing, {seen} packets counted"
                    bar.update(now - done[0])
                    done[0] = now

                result = probe.run(where, observer, seconds, generate=generate, on_tick=tick)
                bar.update(steps - done[0])
    emit(probe_json(result) if fmt == "json" else probe_text(result))


@cli.command(
    "selftest",
    epilog="""\b
Exit status: 0 OK, 1 a step failed, 3 bcc or kernel headers missing.
""",
)
def selftest_cmd() -> int:
    """Check the network side end to end, like the agent's `runtime self-test`: a
    throwaway namespace pair, a classifier that accepts, an observer in front of it and
    one behind, packets, both counts checked, everything removed."""
    from tcaudit.lab.selftest import selftest

    privileges.require("selftest")
    result = selftest()
    for step in result.steps:
        click.echo(f"  [{'ok' if step.ok else 'FAILED'}] {step.name}: {step.detail}")
    if result.ok:
        click.echo("tcaudit self test: OK")
        return 0
    failed = next((s for s in result.steps if not s.ok), None)
    where = failed.name if failed else "incomplete"
    click.echo(f"tcaudit self test: FAILED at step '{where}'")
    return 3 if result.environment else 1


@cli.command(
    "watch",
    epilog="""\b
Examples:
  sudo tcaudit watch                         every namespace, one minute
  sudo tcaudit watch --duration 10m --format jsonl > tc-changes.jsonl
  sudo tcaudit watch --netns self --gap 50ms
\b
Stops at --duration or Ctrl-C (exit 130) and prints a summary. Read-only.
""",
)
@click.option(
    "--netns",
    "netns",
    multiple=True,
    metavar="SEL",
    help=SELECTOR_HELP + " Without it, namespaces created while watching are picked up too.",
)
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    metavar="TIME",
    help="How long to watch: 60s, 10m, 500ms.",
)
@click.option(
    "--gap",
    default="100ms",
    show_default=True,
    metavar="TIME",
    help="Report a hook left without a vendor's filter for longer than this.",
)
@click.option(
    "--vendors",
    "vendor_files",
    multiple=True,
    metavar="FILE",
    help="Extra vendor fingerprints. Repeatable.",
)
@format_option(
    ["text", "jsonl"],
    "text lines, or one JSON object per line (tcaudit/watch/v1; the last one is the summary).",
)
def watch_cmd(
    netns: tuple[str, ...], duration: str, gap: str, vendor_files: tuple[str, ...], fmt: str
) -> int:
    """Record every change to the tc hooks as it happens (filters added, replaced,
    deleted or lost, clsact qdiscs, TCX attachments) with the vendor and the process
    behind it, and raise findings when vendors race each other."""
    import json

    from tcaudit.live.watch import Watcher
    from tcaudit.output.reports import watch_json, watch_line, watch_summary, watch_summary_text
    from tcaudit.vendors.registry import load_registry

    privileges.require("watch")
    seconds, gap_seconds = parse_duration(duration), parse_duration(gap)
    registry = load_registry(vendor_files)

    def echo_item(item: Any) -> None:
        line = json.dumps(watch_json(item)) if fmt == "jsonl" else watch_line(item)
        click.echo(line)

    watcher = Watcher(netns, registry, echo_item, gap=gap_seconds)
    stopped = 0
    try:
        watcher.start()
        watcher.run(seconds)
    except KeyboardInterrupt:
        stopped = EXIT_INTERRUPTED
    except Terminated:
        stopped = EXIT_TERMINATED
    finally:
        watcher.finish()
    summary = watcher.summary
    if fmt == "jsonl":
        click.echo(json.dumps(watch_summary(summary)))
    else:
        click.echo(watch_summary_text(summary), err=True, nl=False)
    return stopped


@cli.command(
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


@cli.group(
    "lab",
    epilog="""\b
Examples:
  sudo tcaudit lab list
  sudo tcaudit lab up cilium-1.9
  sudo tcaudit recommend --netns lab:cilium-1.9
  sudo tcaudit lab traffic cilium-1.9 && sudo tcaudit probe --netns lab:cilium-1.9 --generate
  sudo tcaudit lab trigger cilium-1.9-race     (with `tcaudit watch` running)
  sudo tcaudit lab down --all
""",
)
def lab_group() -> None:
    """Reproductions of known tc conflicts in network namespaces the lab creates (never
    the interfaces of the namespace you run it from). `--netns lab:NAME` selects one
    scenario in every other command."""


@lab_group.command("list")
def lab_list() -> None:
    """The scenarios, what happened in real life, and the expected recommendation."""
    import textwrap

    from tcaudit.lab.scenarios import SCENARIOS, running

    up_now = set(running())
    for s in SCENARIOS:
        state = "  [up]" if s.name in up_now else ""
        click.echo(f"{s.name}{state}: expected {s.expected}")
        click.echo(textwrap.fill(s.story, 92, initial_indent="    ", subsequent_indent="    "))


@lab_group.command("up")
@click.argument("name")
def lab_up(name: str) -> None:
    """Build a scenario (state in /run/tcaudit/lab; `down` removes exactly it)."""
    from tcaudit.lab.scenarios import up

    privileges.require("lab up")
    result = up(name)
    click.echo(f"{name} is up: {', '.join(result.namespaces)}")
    click.echo(f"expected: {result.scenario.expected}")
    click.echo(f"look at it: tcaudit scan --netns lab:{name}; tcaudit recommend --netns lab:{name}")


@lab_group.command("status")
def lab_status() -> None:
    """Which scenarios are up, and their namespaces."""
    from tcaudit.lab.scenarios import namespaces_of, running

    names = running()
    if not names:
        click.echo("no lab scenario is up")
    for name in names:
        click.echo(f"{name}: {' '.join(namespaces_of(name)) or '(namespaces gone)'}")


@lab_group.command("traffic")
@click.argument("name")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 1000))
def lab_traffic(name: str, rounds: int) -> None:
    """Send pings and UDP between the scenario's namespaces."""
    from tcaudit.lab.scenarios import send_traffic

    privileges.require("lab traffic")
    click.echo(f"sent {send_traffic(name, rounds)} packets between {name}'s namespaces")


@lab_group.command("trigger")
@click.argument("name")
def lab_trigger(name: str) -> None:
    """Play a scenario's dynamic part (cilium-1.9-race: the replace-then-delete race)."""
    from tcaudit.lab.scenarios import trigger

    privileges.require("lab trigger")
    pids = trigger(name)
    click.echo(f"{name}: the race ran (agent pid {pids[0]}, cilium pid {pids[1]})")


@lab_group.command("down")
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Every scenario that is up.")
def lab_down(name: str | None, everything: bool) -> None:
    """Remove exactly what `up` made (also after a crash)."""
    from tcaudit.lab.scenarios import down, running

    privileges.require("lab down")
    if not name and not everything:
        raise click.UsageError("name a scenario, or --all")
    for scenario_name in running() if everything else [name or ""]:
        result = down(scenario_name)
        click.echo(f"{scenario_name}: removed {len(result.removed)} objects")
        for item in result.left:
            click.echo(f"  left behind: {item}", err=True)


def _load_snapshot(path: str, vendor_files: Sequence[str]) -> Any:
    from tcaudit.inventory.snapshot import read_document, scan_from_json
    from tcaudit.vendors.attribution import add_vendors
    from tcaudit.vendors.registry import load_registry

    doc = read_document(path, SCAN_SCHEMA)
    return doc, add_vendors(scan_from_json(doc), load_registry(vendor_files))


@cli.command(
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
@format_option(["table", "json"], "table, or json (tcaudit/diff/v1).")
def diff_cmd(old: str, new: str, fail_on: str, vendor_files: tuple[str, ...], fmt: str) -> int:
    """What changed on the tc hooks between two snapshots: filters added, removed, moved,
    replaced, verdicts and vendor versions changed, TCX programs appearing."""
    from tcaudit.advice.diff import diff
    from tcaudit.output.reports import diff_json, diff_text, failing

    _, before = _load_snapshot(old, vendor_files)
    _, after = _load_snapshot(new, vendor_files)
    changes = diff(before, after)
    emit(diff_json(changes, old, new, fail_on) if fmt == "json" else diff_text(changes, fail_on))
    return 1 if failing(changes, fail_on) else 0


@cli.command(
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
@format_option(["table", "json"], "table, or json (tcaudit/merge/v1).")
def merge_cmd(snapshots: tuple[str, ...], vendor_files: tuple[str, ...], fmt: str) -> None:
    """One cluster-wide answer from every node's snapshot: the priority that works on
    all of them, or the nodes that force disabling network detections and why."""
    from tcaudit.advice.merge import merge
    from tcaudit.output.reports import merge_json, merge_text

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
    emit(merge_json(answer) if fmt == "json" else merge_text(answer))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code instead of raising SystemExit."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: Sequence[str] | None) -> int:
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="tcaudit",
            standalone_mode=False,
        )
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("tcaudit: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Terminated:
        click.echo("tcaudit: terminated", err=True)
        return EXIT_TERMINATED
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        return 0
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except TcauditError as err:
        click.echo(f"tcaudit: error: {err}", err=True)
        return err.exit_code
    except BrokenPipeError:
        # `tcaudit scan | head`: quietly stop, without Python's noise on exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:
        if os.environ.get("TCAUDIT_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"tcaudit: internal error: {type(err).__name__}: {err} "
            "(set TCAUDIT_DEBUG=1 for the traceback; please report it)",
            err=True,
        )
        return EXIT_CRASH
    return int(result) if isinstance(result, int) else 0
