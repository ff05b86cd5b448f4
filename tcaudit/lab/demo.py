"""`make demo`: the lab's cilium-1.9 scenario, what tcaudit says about it, then gone.

Brings up a host namespace and two pods shaped like a Cilium 1.9 node running the
Datadog agent (CWS at pref 10), prints `tcaudit scan` and `tcaudit recommend` for it,
runs a short probe with generated traffic, and tears everything down — also when a step
fails or you press Ctrl-C. Each step is `python -m tcaudit ...` in a child process.
Nothing outside the lab's own namespaces is touched.
"""

from __future__ import annotations

import subprocess
import sys

import click

from tcaudit.errors import TcauditError
from tcaudit.kernel import privileges
from tcaudit.lab import scenarios as lab

SCENARIO = "cilium-1.9"
STEPS = (
    ("scan", "Every tc hook of the lab's namespaces, in the order the kernel runs them. "
     "Cilium's filter sits at pref 1 and ACCEPTS (TC_ACT_OK, after tail calls); the CWS "
     "stand-in at pref 10 hands packets on."),
    ("recommend", "The answer: Cilium's pref-1 filter ends the chain on the pods' veths, "
     "so no classifier_priority gets CWS ahead of it."),
    ("probe", "Observers counting real packets at free prefs: one just after Cilium's "
     "pref-1 filter (the interface counts what reaches it: nothing can go before pref 1 "
     "without joining Cilium's pref) and one just before CWS's pref 10."),
)


def _say(title: str, text: str) -> None:
    click.secho(f"\n=== {title} ", bold=True, nl=False)
    click.echo("=" * max(0, 70 - len(title)))
    import textwrap

    click.echo(textwrap.fill(text, 88) + "\n")


def main() -> int:
    try:
        privileges.require("demo")
        _say(f"tcaudit lab up {SCENARIO}", lab.scenario(SCENARIO).story)
        result = lab.up(SCENARIO)
        click.echo(f"namespaces: {', '.join(result.namespaces)}")
    except TcauditError as err:
        click.echo(f"tcaudit: error: {err}", err=True)
        return err.exit_code
    code = 0
    try:
        selector = ["--netns", f"lab:{SCENARIO}"]
        commands = {
            "scan": ["scan", *selector],
            "recommend": ["recommend", *selector],
            "probe": ["probe", *selector, "--generate", "--duration", "2s"],
        }
        for name, text in STEPS:
            _say("tcaudit " + " ".join(commands[name]), text)
            # the CLI runs as its own process, as a user would run it: the lab sits beside
            # the layers and never imports the command line
            done = subprocess.run([sys.executable, "-m", "tcaudit", *commands[name]], check=False)
            code = done.returncode or code
    finally:
        down = lab.down(SCENARIO)
        _say(f"tcaudit lab down {SCENARIO}",
             f"removed {len(down.removed)} objects; nothing was left behind"
             if not down.left else f"left behind: {'; '.join(down.left)}")
    click.echo("On a real node: sudo tcaudit recommend   (tcaudit --help for the rest)")
    return code


if __name__ == "__main__":
    sys.exit(main())
