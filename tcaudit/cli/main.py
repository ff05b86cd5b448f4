"""Command line: parse options, call one core function per command, render, map errors.

Exit codes (contracts.md): 0 done, 1 findings / failed self-test step, 2 usage, 3
environment, 130 interrupted. An unexpected crash exits 70 with one line (set
TCAUDIT_DEBUG=1 for the traceback), so a crash is never mistaken for findings.

This module holds the root group, the entry point and the error mapping; the commands
live in reading.py (they read the node), offline.py (snapshots), live.py (probe, watch)
and lab.py (selftest, lab), and are added to the root group here.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from tcaudit import __version__
from tcaudit.cli.exits import EXIT_CRASH, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from tcaudit.errors import TcauditError

# Commands are imported when they are looked up (`tcaudit scan` imports cli/reading.py,
# never the live tools), and every command imports the core modules it needs when it
# runs: `tcaudit scan` is the one people loop over, and its start-up time is part of its
# speed target; `tcaudit scan --help` imports no inventory, engine or output module.
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("reading", "scan_cmd"),
    "explain": ("reading", "explain_cmd"),
    "recommend": ("reading", "recommend_cmd"),
    "check": ("reading", "check_cmd"),
    "snapshot": ("reading", "snapshot_cmd"),
    "bundle": ("reading", "bundle_cmd"),
    "diff": ("offline", "diff_cmd"),
    "merge": ("offline", "merge_cmd"),
    "probe": ("live", "probe_cmd"),
    "watch": ("live", "watch_cmd"),
    "selftest": ("lab", "selftest_cmd"),
    "lab": ("lab", "lab_group"),
}


class _Commands(click.Group):
    """The root group: each command's module is imported on first lookup."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, name = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"tcaudit.cli.{module}"), name)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Run 'tcaudit COMMAND --help' for a command's options and examples.",
)
@click.version_option(__version__, prog_name="tcaudit")
def cli() -> None:
    """Which eBPF tc classifiers run on this node's hooks, in what order, what they hide
    from later ones, and what classifier_priority Datadog CWS should use."""


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
        from tcaudit.output.sanitize import shown

        click.echo(f"tcaudit: error: {shown(str(err))}", err=True)
        return err.exit_code
    except BrokenPipeError:
        # `tcaudit scan | head`: quietly stop, without Python's noise on exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:
        from tcaudit.cli.crash import write_crash
        from tcaudit.output.sanitize import shown

        if os.environ.get("TCAUDIT_DEBUG"):
            import traceback

            traceback.print_exc()
        where = write_crash(err, list(argv) if argv is not None else sys.argv[1:])
        details = (
            f"the details are in {where}" if where else "set TCAUDIT_DEBUG=1 for the traceback"
        )
        click.echo(
            f"tcaudit: internal error: {type(err).__name__}: {shown(str(err))} "
            f"({details}; please report it)",
            err=True,
        )
        return EXIT_CRASH
    return int(result) if isinstance(result, int) else 0
