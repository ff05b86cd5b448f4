"""The commands for the lab and the self test: selftest, and the `lab` group (list, up,
status, traffic, trigger, down) that builds and removes reproductions of known tc
conflicts in namespaces of its own."""

from __future__ import annotations

import click

from tcaudit.kernel import privileges


@click.command(
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


@click.group(
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
