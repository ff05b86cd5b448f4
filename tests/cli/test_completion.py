"""Shell completion through click's own mechanism (_TCAUDIT_COMPLETE, README): it lists
the commands and their options, completes option values, and completing runs no command
(the lazily loaded command modules are imported to be listed, nothing below them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tcaudit.cli import options
from tcaudit.cli.main import COMMANDS
from tcaudit.lab.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def complete(words: str, shell: str = "bash") -> list[str]:
    """The candidates the shell would be offered for ``words`` (the last word is the one
    being completed)."""
    parts = words.split(" ")
    env = {
        **os.environ,
        "_TCAUDIT_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        # bash and zsh: the index of the word being completed; fish: that word itself
        "COMP_CWORD": parts[-1] if shell == "fish" else str(len(parts) - 1),
    }
    done = subprocess.run([sys.executable, "-m", "tcaudit"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    if shell == "bash":  # "type,value" per line
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]
    return done.stdout.splitlines()


def test_completion_lists_every_command() -> None:
    assert complete("tcaudit ") == sorted(COMMANDS)
    assert complete("tcaudit re") == ["recommend"]
    # zsh gets each command's short help beside it
    zsh = complete("tcaudit sc", shell="zsh")
    assert zsh[:2] == ["plain", "scan"] and zsh[2].startswith("Inventory every tc hook")


@pytest.mark.parametrize("command", ["scan", "recommend", "check"])
def test_completion_lists_a_commands_options(command: str) -> None:
    offered = complete(f"tcaudit {command} --")
    for flag in ("--netns", "--dev", "--hook", "--direction", "--format", "--all", "--wide",
                 "--help"):
        assert flag in offered, (command, flag)


def test_completion_fills_in_option_values() -> None:
    assert complete("tcaudit recommend --format ") == ["table", "json"]
    assert complete("tcaudit check --format j") == ["json", "junit"]
    assert complete("tcaudit scan --hook clsact/") == ["clsact/ingress", "clsact/egress"]
    assert complete("tcaudit scan --direction e") == ["egress"]
    netns = complete("tcaudit scan --netns ")
    assert {"all", "self", "pid:", "inode:", "lab:"} <= set(netns)
    assert "lo" in complete("tcaudit scan --dev ")
    fish = complete("tcaudit watch --format ", shell="fish")
    assert fish == ["plain,text", "plain,jsonl"]


def test_the_shells_get_their_scripts() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")):
        env = {**os.environ, "_TCAUDIT_COMPLETE": f"{shell}_source"}
        done = subprocess.run([sys.executable, "-m", "tcaudit"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True, timeout=60)
        assert "_TCAUDIT_COMPLETE" in done.stdout and marker in done.stdout, shell


def test_completing_runs_no_command_and_imports_nothing_below_the_cli() -> None:
    code = (
        "import os, sys\n"
        "os.environ.update(_TCAUDIT_COMPLETE='bash_complete', COMP_WORDS='tcaudit scan --',"
        " COMP_CWORD='2')\n"
        "from tcaudit.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60)
    loaded = set(done.stderr.split())
    assert "--wide" in done.stdout
    assert "tcaudit.cli.reading" in loaded  # scan's command, looked up lazily
    assert not {m for m in loaded if m.startswith(("tcaudit.inventory.", "tcaudit.analysis.",
                                                   "tcaudit.live.", "tcaudit.pipeline"))}
    assert not {"bcc", "pyroute2", "jsonschema"} & loaded


def test_only_plain_names_are_offered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespace name is whoever made it's choice: one that would break the shell's
    line-per-candidate protocol or expand there is left out."""
    for name in ("plain-ns_1.2", "two\nlines", "has space", "$(reboot)", "glob*", "ok@x"):
        (tmp_path / name).touch()
    monkeypatch.setattr(options, "NETNS_DIRS", (str(tmp_path), str(tmp_path / "missing")))
    ctx = click.Context(click.Command("x"))
    offered = options.complete_netns(ctx, click.Option(["--netns"]), "")
    assert {"plain-ns_1.2", "ok@x"} <= set(offered)
    assert not {"two\nlines", "has space", "$(reboot)", "glob*"} & set(offered)
    assert options.complete_netns(ctx, click.Option(["--netns"]), "pl") == ["plain-ns_1.2"]


@pytest.mark.usefixtures("privileged")
def test_named_namespaces_are_completed(box: Sandbox) -> None:
    ns = box.namespace("completion")
    assert ns.name in complete(f"tcaudit recommend --netns {ns.name[:-3]}")
