"""The commands that watch live hooks over time: probe (observers counting packets at
chosen prefs) and watch (every change to the hooks as it happens)."""

from __future__ import annotations

import sys
from typing import Any

import click

from tcaudit.cli.exits import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from tcaudit.cli.options import (
    PRIORITY_OPTION,
    SELECTOR_HELP,
    WIDE_OPTION,
    Reading,
    chosen_format,
    complete_netns,
    emit,
    format_option,
    parse_duration,
    reading_options,
    resolve_lab,
    warn,
)
from tcaudit.errors import UsageError
from tcaudit.kernel import privileges


@click.command(
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
    help="Send test UDP traffic between the selected namespaces' own addresses; only "
    "in namespaces tcaudit made (lab, selftest) unless --generate-on-node.",
)
@click.option(
    "--generate-on-node",
    is_flag=True,
    help="Allow --generate in namespaces tcaudit did not make: UDP between every pod "
    "address pair it finds, on a live node. Off by default.",
)
@click.option(
    "--share-pref",
    is_flag=True,
    help="Also put observers at prefs other filters hold (bpf, protocol all), e.g. just "
    "before a vendor at pref 1. Such an observer joins that vendor's classifier instance: "
    "while the probe runs, the vendor cannot re-create that pref with another kind or "
    "protocol (EINVAL). Off by default: free prefs only.",
)
@PRIORITY_OPTION
@click.option(
    "--cleanup",
    "do_cleanup",
    is_flag=True,
    help="Remove observers left by a probe that was killed, and exit.",
)
@format_option("probe", "table, or json (tcaudit/probe/v1).")
@WIDE_OPTION
def probe_cmd(
    reading: Reading,
    at: tuple[int, ...],
    duration: str,
    generate: bool,
    generate_on_node: bool,
    share_pref: bool,
    priority: int | None,
    do_cleanup: bool,
    fmt: str,
    wide: bool,
) -> None:
    """Count what really reaches chosen prefs of live clsact hooks: one observer at the
    CWS priority and one just before and after each foreign classifier, so each gets a
    verdict from traffic ("hands packets on" / "ends the chain for N%"), set beside the
    static one from its bytecode."""
    from tcaudit.live import probe
    from tcaudit.live.observer import Observer
    from tcaudit.output.interface import formatter
    from tcaudit.pipeline import inventory

    privileges.require("probe")
    if do_cleanup:
        emit(formatter("table").cleanup(probe.cleanup()))
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
    where = probe.plan(scan, at=at, priority=priority, share_pref=share_pref)
    if not where.placements:  # one line saying why, not a warning per hook and then that
        raise UsageError(probe.nothing_to_observe(where))
    for skipped in where.skipped:
        warn([f"{skipped.netns} {skipped.interface} {skipped.hook}: {skipped.reason}"])
    with Observer() as observer:
        if not sys.stderr.isatty():  # no progress bar in logs and pipes
            result = probe.run(
                where, observer, seconds, generate=generate, generate_on_node=generate_on_node
            )
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

                result = probe.run(
                    where,
                    observer,
                    seconds,
                    generate=generate,
                    generate_on_node=generate_on_node,
                    on_tick=tick,
                )
                bar.update(steps - done[0])
    emit(chosen_format(fmt, wide=wide).probe(result))


@click.command(
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
    shell_complete=complete_netns,
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
    "watch",
    "text lines, or one JSON object per line (tcaudit/watch/v1; the last one is the summary).",
)
def watch_cmd(
    netns: tuple[str, ...], duration: str, gap: str, vendor_files: tuple[str, ...], fmt: str
) -> int:
    """Record every change to the tc hooks as it happens (filters added, replaced,
    deleted or lost, clsact qdiscs, TCX attachments) with the vendor and the process
    behind it, and raise findings when vendors race each other."""
    from tcaudit.live.watch import Watcher
    from tcaudit.output.interface import formatter
    from tcaudit.vendors.registry import load_registry

    privileges.require("watch")
    seconds, gap_seconds = parse_duration(duration), parse_duration(gap)
    registry = load_registry(vendor_files)
    shown = formatter(fmt)

    def echo_item(item: Any) -> None:
        click.echo(shown.watch_item(item))

    watcher = Watcher(resolve_lab(netns), registry, echo_item, gap=gap_seconds)
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
        click.echo(shown.watch_summary(summary), nl=False)
    else:
        click.echo(shown.watch_summary(summary), err=True, nl=False)
    return stopped
