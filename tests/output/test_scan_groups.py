"""A node-sized scan reads like one (issue 16): a summary first, alike namespaces and
interfaces once, everything unusual in full; tables that fit 80, 100, 200 columns or a
pipe; colour only on a terminal and never with NO_COLOR.

Golden files: regenerate with TCAUDIT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tcaudit.advice.overview import ALIKE, overview
from tcaudit.advice.recommend import recommend
from tcaudit.cli.main import main
from tcaudit.lab.sandbox import Sandbox
from tcaudit.model import Entry, Holder, Hook, Scan, Verdict
from tcaudit.output.interface import formatter
from tcaudit.output.json_format import dumps, scan_json
from tcaudit.output.layout import WIDE, cells
from tests.nodes import node as sandbox_node
from tests.output.fleet import ODD, PODS, UNKNOWN, fleet, relabel
from tests.output.test_golden import check_golden
from tests.output.test_hostile_names import HOSTILE, assert_inert

ROOT = Path(__file__).resolve().parents[2]
SGR = re.compile(r"\x1b\[[0-9;]*m")
FLEET = fleet()


class Tty(io.StringIO):
    """stdout as a terminal (colour allowed), for the CLI."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's reading commands get the fleet instead of this machine's hooks."""
    import tcaudit.inventory.cws_agents
    import tcaudit.kernel.privileges
    import tcaudit.pipeline

    monkeypatch.setattr(tcaudit.pipeline, "inventory", lambda *a, **k: FLEET)
    monkeypatch.setattr(tcaudit.kernel.privileges, "require", lambda *a: None)
    monkeypatch.setattr(tcaudit.inventory.cws_agents, "running_agents", lambda: ())
    for name in ("COLUMNS", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    return out


def widest(text: str) -> int:
    return max(cells(SGR.sub("", line)) for line in text.splitlines())


def test_the_fleet_is_told_in_a_screenful_and_leads_with_the_summary() -> None:
    text = formatter("table").scan(FLEET)
    check_golden("fleet.scan.txt", text)
    lines = text.splitlines()
    assert len(lines) <= 40
    assert lines[0].startswith("251 namespaces, 752 interfaces (251 with nothing on their hooks")
    assert "Vendors (classifiers): Datadog CWS 7.39.2+ 1002, Cilium 1.13+ 251, unknown 1" in text
    assert "a chain-ender on 251 of the 1504 hooks it attaches to" in text.replace("\n    ", " ")
    assert f"{PODS - 2} namespaces like tcaf-pod-1: eth0 clsact/ingress+egress: CWS only" in text
    # the unusual pods and the node's own namespace in full, in scan order
    tables = re.findall(r"^netns (\S+) \[inode", text, re.M)
    assert tables == ["self", f"tcaf-pod-{ODD}", f"tcaf-pod-{UNKNOWN}"]
    assert re.search(r"^!!  lxc1 \+249  clsact/ingress +1 ", text, re.M)  # 250 alike veths
    assert re.search(r"^!!  eth0 +clsact/ingress +5 .*acme_guard .*unknown$", text, re.M)


def test_all_lists_every_namespace_interface_and_hook_as_before() -> None:
    full = formatter("table").scan(FLEET, show_all=True)
    grouped = formatter("table").scan(FLEET)
    assert len(full.splitlines()) > 20 * len(grouped.splitlines())
    tables = re.findall(r"^netns (\S+) \[inode", full, re.M)
    assert tables == ["self", *(f"tcaf-pod-{i}" for i in range(1, PODS + 1))]
    assert "namespaces like" not in full and " +249" not in full
    assert len(re.findall(r"^!! ", full, re.M)) == 250 + 1  # every lxc, and pod 100's
    assert full.count("no clsact qdisc") == 2 * (PODS + 1)  # every lo, both directions


def test_json_is_unchanged_by_grouping(capsys: pytest.CaptureFixture[str],
                                       offline: None) -> None:
    out = cli(capsys, "scan", "--format", "json")
    assert json.loads(out) == json.loads(dumps(scan_json(FLEET)))
    assert out == cli(capsys, "scan", "--format", "json", "--all", "--wide")


@pytest.mark.parametrize("width", [80, 100, 200])
def test_columns_sets_the_width(width: int, capsys: pytest.CaptureFixture[str], offline: None,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    for command in ("scan", "recommend", "check"):
        text = cli(capsys, command)
        check_golden(f"fleet.{command}.{width}.txt", text)
        assert widest(text) <= width, command
        assert "\x1b" not in text  # piped: no colour
    wide = cli(capsys, "scan", "--wide")
    assert "cil_from_container-lxc1 " in wide and "held by" in wide
    assert "To fit" not in wide


def test_a_pipe_gets_the_fixed_width(capsys: pytest.CaptureFixture[str], offline: None) -> None:
    text = cli(capsys, "scan")
    assert text == formatter("table").scan(FLEET)  # the documented 120 columns
    assert widest(text) <= 120 and "To fit 120 columns" in text
    check_golden("fleet.check.txt", cli(capsys, "check"))


def test_colour_on_a_terminal_only_and_never_with_no_color(
    capsys: pytest.CaptureFixture[str], offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    piped = {c: cli(capsys, c) for c in ("scan", "check")}
    monkeypatch.setattr(sys, "stdout", Tty())
    for command, plain in piped.items():
        main([command])
        coloured = sys.stdout.getvalue()  # type: ignore[attr-defined]
        sys.stdout.seek(0)
        sys.stdout.truncate()
        assert "\x1b[31" in coloured  # the blind count, FAIL, [blind], !!: red
        assert SGR.sub("", coloured) == plain  # colour adds nothing the words do not say
        check_golden(f"fleet.{command}.colour.txt", coloured)
    monkeypatch.setenv("NO_COLOR", "1")
    for command, plain in piped.items():
        main([command])
        assert sys.stdout.getvalue() == plain  # type: ignore[attr-defined]
        sys.stdout.seek(0)
        sys.stdout.truncate()
    monkeypatch.setenv("NO_COLOR", "")
    monkeypatch.setenv("TERM", "dumb")
    main(["scan"])
    assert sys.stdout.getvalue() == piped["scan"]  # type: ignore[attr-defined]


def test_a_real_terminal_gives_its_width_and_colour(tmp_path: Path) -> None:
    """Through a pty, as a person runs it: the terminal's own size, colour; NO_COLOR."""
    import fcntl
    import pty
    import struct
    import termios

    snapshot = tmp_path / "fleet.json"
    snapshot.write_text(dumps(scan_json(FLEET)))

    def run(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 91, 0, 0))
        clean = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
        child = subprocess.Popen([sys.executable, "-m", "tcaudit", "merge", str(snapshot)],
                                 cwd=ROOT, stdout=follower, stderr=subprocess.DEVNULL,
                                 env={**clean, "TERM": "xterm", **env})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert child.wait(timeout=60) == 0
        return b"".join(chunks).decode().replace("\r\n", "\n")

    coloured = run({})
    assert "\x1b[31;1mDISABLE\x1b[0m" in coloured
    assert widest(coloured) <= 91 and "To fit 91 columns" in coloured
    plain = run({"NO_COLOR": "1"})
    assert "\x1b" not in plain and plain == SGR.sub("", coloured)


def one_pod_changed(change: object) -> Scan:
    """The fleet with pod 7's eth0 ingress hook changed by ``change(hook) -> hook``."""
    spaces = list(FLEET.namespaces)
    ns = spaces[7]
    eth0 = ns.interfaces[1]
    hooks = list(eth0.hooks)
    hooks[1] = change(hooks[1])  # type: ignore[operator]
    spaces[7] = replace(ns, interfaces=(ns.interfaces[0], replace(eth0, hooks=tuple(hooks))))
    return replace(FLEET, namespaces=tuple(spaces))


def _extra(**fields: object) -> object:
    def change(hook: Hook) -> Hook:
        cws = hook.entries[0]
        extra = replace(cws, pref=30, handle=9, filter_name="extra", vendor=None, **fields)
        return replace(hook, entries=(cws, extra))

    return change


UNUSUAL = {
    "an unknown vendor": _extra(),
    "an unknown verdict": lambda h: replace(h, entries=(replace(
        h.entries[0], verdict=Verdict(None, None, "static", "helper 999")),)),
    "an unreadable program": lambda h: replace(h, entries=(replace(
        h.entries[0], program=replace(h.entries[0].program, error="EPERM")),)),
    "an unreachable chain": lambda h: replace(h, entries=(*h.entries, replace(
        h.entries[0], chain=4, reachable=False, pref=40)),),
    "a u32 filter": lambda h: replace(h, entries=(*h.entries, Entry(
        pref=40, handle=1, chain=0, protocol="ip", kind="u32", direct_action=None,
        filter_name=None, program=None, has_actions=True)),),
    "a shared block": lambda h: replace(h, block=7, block_devices=("eth0",)),
    "one of tcaudit's observers": lambda h: replace(h, entries=(*h.entries, replace(
        h.entries[0], pref=40, observer=True)),),
    "a look-alike of CWS that accepts": lambda h: replace(h, entries=(replace(
        h.entries[0], verdict=Verdict((0,), ("accept",), "static", None)),)),
    "the same kind of entry at another pref": lambda h: replace(h, entries=(replace(
        h.entries[0], pref=11),)),
    "an unattributed classifier at CWS's pref": lambda h: replace(h, entries=(replace(
        h.entries[0], verdict=Verdict((0,), ("accept",), "static", None), vendor=None,
        filter_name="x"), *h.entries)),
}


@pytest.mark.parametrize("what", list(UNUSUAL))
def test_a_namespace_with_anything_unusual_is_never_hidden_in_a_group(what: str) -> None:
    scan = one_pod_changed(UNUSUAL[what])
    text = formatter("table", layout=WIDE).scan(scan)
    assert re.search(r"^netns tcaf-pod-7 \[inode", text, re.M), what
    assert f"{PODS - 3} namespaces like tcaf-pod-1:" in text
    # and a second namespace like it is still not grouped with the first
    view = overview(scan)
    assert (7,) in view.groups


def test_names_and_ids_never_decide_what_is_alike() -> None:
    # a hostile name and other ids: still alike (shown escaped, never acted on)
    hostile = relabel(FLEET, 3, "pod " + HOSTILE)
    spaces = list(hostile.namespaces)
    eth0 = spaces[5].interfaces[1]
    renamed = replace(eth0, name="net1", ifindex=77, hooks=tuple(
        replace(h, entries=tuple(replace(e, handle=0xBEEF, filter_name="whatever",
                                         program=replace(e.program, id=4242, tag="ff" * 8,
                                                         holders=(Holder(1, "evil"),)))
                                 for e in h.entries)) for h in eth0.hooks))
    spaces[5] = replace(spaces[5], interfaces=(spaces[5].interfaces[0], renamed))
    scan = replace(hostile, namespaces=tuple(spaces))
    view = overview(scan)
    [group] = [g for g in view.groups if len(g) > 1]
    assert 3 in group and 5 in group and len(group) == PODS - 2
    text = formatter("table", layout=WIDE).scan(scan)
    assert_inert(text)
    assert "interface names differ" in text
    # a name made to look like another group's words cannot join them
    forged = relabel(FLEET, 4, "tcaf-pod-1: eth0 clsact/ingress+egress: CWS only")
    assert overview(forged).groups == overview(FLEET).groups


def test_fewer_than_alike_are_listed_in_full() -> None:
    small = fleet(pods=ALIKE - 1)
    text = formatter("table").scan(small)
    assert "namespaces like" not in text and " +1 " not in text
    assert len(re.findall(r"^netns ", text, re.M)) == 1 + ALIKE - 1
    assert ALIKE == 3


def test_recommend_and_check_group_alike_blind_hooks_and_findings() -> None:
    rec = recommend(FLEET)
    text = formatter("table").check(rec, "blind")
    assert text.splitlines()[:3] == [
        "FAIL: 251 finding(s) at or above 'blind'",
        "  Cilium: a chain-ender at pref 1 on 250 hooks",
        "  unknown vendor: a chain-ender at pref 5 on 1 hook",
    ]
    assert "(and 249 more hooks alike; --all lists each)" in text.replace("\n    ", " ")
    assert re.search(r"^self +lxc1 \+249 +clsact/ingress", text, re.M)
    full = formatter("table").check(rec, "blind", show_all=True)
    assert len(re.findall(r"^\[blind\] blind: lxc\d+ ", full, re.M)) == 250


@pytest.mark.usefixtures("privileged")
def test_the_real_scan_groups_real_pod_namespaces(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kernel: a host and five pods behind veths, Cilium-shaped filters at pref 1 on the
    host veths, the CWS stand-in everywhere; one pod also gets a filter no vendor
    fingerprint knows. The scan groups the four alike pods and the five alike veths and
    lists the odd pod in full."""
    node = sandbox_node(box, pods=5)
    node.cilium(pref=1)
    node.cws(pref=10)
    odd = node.pods[3]
    box.attach(odd, "eth0", "ingress", box.load_returning(-1, "acme_guard"), pref=20,
               handle=3, name="acme_guard")
    code = main(["scan", "--wide", *node.selectors()])
    text = capsys.readouterr().out
    assert code == 0
    alike = {p.name for p in node.pods if p is not odd}
    head = re.search(r"^4 namespaces like (\S+): (.*)$", text, re.M)
    assert head is not None and head.group(1) in alike
    assert "eth0 clsact/ingress+egress: CWS only" in head.group(2)
    also = re.search(r"^    also (.*) \(--all lists each in full\)$", text, re.M)
    assert also is not None and set(also.group(1).split(", ")) == alike - {head.group(1)}
    tables = re.findall(r"^netns (\S+) \[inode", text, re.M)
    assert sorted(tables) == sorted([node.host.name, odd.name])
    assert re.search(r"^!!  lxc\d \+4 +clsact/ingress +1 .*cil_from_container-lxc\d", text, re.M)
    assert "a chain-ender on 5 of the 32 hooks it attaches to" in text.replace("\n    ", " ")
    assert re.search(r"^ +clsact/ingress +20 .*acme_guard .*unknown", text, re.M)
    code = main(["scan", "--all", "--wide", *node.selectors()])
    full = capsys.readouterr().out
    assert code == 0
    assert sorted(re.findall(r"^netns (\S+) \[inode", full, re.M)) == sorted(
        ns.name for ns in node.namespaces)
