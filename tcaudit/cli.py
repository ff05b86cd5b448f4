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
from typing import Any, TypeVar

import click

from tcaudit import __version__, privileges
from tcaudit.errors import TcauditError
from tcaudit.render import dumps, scan_json, scan_table
from tcaudit.scan import Selection, hooks_for, scan

EXIT_INTERRUPTED = 130
EXIT_CRASH = 70
F = TypeVar("F", bound=Callable[..., Any])

SELECTOR_HELP = (
    "Network namespace to read: all (default), self, a netns name, pid:N, a path "
    "(/proc/N/ns/net, /run/netns/X), inode:N or lab:NAME. Repeatable."
)


def selection_options(func: F) -> F:
    """--netns/--dev/--hook/--direction, shared by every command that reads hooks."""
    func = click.option(
        "--direction",
        type=click.Choice(["ingress", "egress", "both"]),
        default="both",
        show_default=True,
        help="Shorthand for both hook kinds (tcx and clsact) of one direction.",
    )(func)
    func = click.option(
        "--hook",
        "hooks",
        multiple=True,
        metavar="HOOK",
        help="tcx/ingress, tcx/egress, clsact/ingress or clsact/egress. Repeatable.",
    )(func)
    func = click.option(
        "--dev", "devs", multiple=True, metavar="IFNAME", help="Interface name. Repeatable."
    )(func)
    func = click.option("--netns", "netns", multiple=True, metavar="SEL", help=SELECTOR_HELP)(func)
    return func


def _selection(
    netns: Sequence[str], devs: Sequence[str], hooks: Sequence[str], direction: str
) -> Selection:
    return Selection(
        netns=tuple(netns),
        devs=tuple(devs),
        hooks=hooks_for(hooks, None if direction == "both" else direction),
    )


def _emit(output: str | dict[str, Any]) -> None:
    """Write a table (str) or a JSON document (dict) to stdout: JSON pretty on a terminal."""
    if isinstance(output, dict):
        output = dumps(output, pretty=sys.stdout.isatty())
    click.echo(output, nl=False)


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(f"tcaudit: warning: {line}", err=True)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Run 'tcaudit COMMAND --help' for a command's options and examples.",
)
@click.version_option(__version__, prog_name="tcaudit")
def cli() -> None:
    """Which eBPF tc classifiers run on this node's hooks, in what order, and what they
    hide from later ones (such as Datadog CWS at classifier_priority 10)."""


@cli.command(
    epilog="""\b
Examples:
  sudo tcaudit scan                          every namespace, every hook
  sudo tcaudit scan --netns self --dev eth0  one interface of the host namespace
  sudo tcaudit scan --netns pid:4242 --direction ingress
  sudo tcaudit scan --format json | jq '.namespaces[].interfaces[].hooks[].entries[]'
"""
)
@selection_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json (schema tcaudit/scan/v1) for tools.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Table: also show interfaces and hooks with no classifiers.",
)
def scan_cmd(
    netns: tuple[str, ...],
    devs: tuple[str, ...],
    hooks: tuple[str, ...],
    direction: str,
    fmt: str,
    show_all: bool,
) -> None:
    """Inventory every tc hook (TCX and clsact) on every interface in every namespace.

    Read-only: tcaudit changes nothing while scanning. Entries are listed in the order the
    kernel runs them: TCX programs first, then clsact filters by ascending pref, and within
    one pref the most recently added first.
    """
    privileges.require("scan")
    result = scan(_selection(netns, devs, hooks, direction))
    _warn(result.warnings)
    _emit(scan_json(result) if fmt == "json" else scan_table(result, show_all=show_all))


scan_cmd.name = "scan"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code instead of raising SystemExit."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="tcaudit",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        click.echo("tcaudit: interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("tcaudit: interrupted", err=True)
        return EXIT_INTERRUPTED
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
