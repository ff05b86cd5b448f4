"""Verdicts in the scan (JSON and table) and `tcaudit explain`, on real hooks."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tcaudit.lab.sandbox import Sandbox
from tests.conftest import validate
from tests.inventory.test_scan import hook_of, pod_pair, run, scan_doc

pytestmark = pytest.mark.usefixtures("privileged")


def verdict_of(entry: dict[str, Any]) -> tuple[Any, Any]:
    return entry["verdict"]["possible"], entry["verdict"]["effective"]


def test_scan_entries_carry_verdicts(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    host, pod = pod_pair(box)
    box.attach(host, "veth0", "ingress", box.load_returning(0, "accepts"), pref=1, handle=1)
    box.attach(host, "veth0", "ingress", box.load_returning(-1, "hands_on"), pref=10, handle=1)
    box.attach(host, "veth0", "ingress", box.load_returning(3, "pipe"), pref=11, handle=1)
    # classic (not direct-action): 0 = no match, anything else = match = accept
    box.attach(
        host,
        "veth0",
        "egress",
        box.load_returning(-1, "classic_match"),
        pref=1,
        handle=1,
        direct_action=False,
    )
    box.attach(
        host,
        "veth0",
        "egress",
        box.load_returning(0, "classic_nomatch"),
        pref=2,
        handle=1,
        direct_action=False,
    )
    box.tcx_attach(pod, "eth0", "ingress", box.load_returning(1, "tcx_other"))
    box.tcx_attach(pod, "eth0", "ingress", box.load_returning(0, "tcx_pass"))
    subprocess.run(
        [
            "tc",
            "-n",
            host.name,
            "filter",
            "add",
            "dev",
            "veth0",
            "egress",
            "pref",
            "20",
            "protocol",
            "ip",
            "u32",
            "match",
            "ip",
            "dst",
            "192.0.2.1/32",
            "classid",
            "1:1",
        ],
        check=True,
    )
    subprocess.run(
        [
            "tc",
            "-n",
            host.name,
            "filter",
            "add",
            "dev",
            "veth0",
            "egress",
            "pref",
            "21",
            "protocol",
            "ip",
            "u32",
            "match",
            "ip",
            "dst",
            "192.0.2.2/32",
            "action",
            "mirred",
            "egress",
            "redirect",
            "dev",
            "veth0",
        ],
        check=True,
    )

    doc = scan_doc(capsys, host, pod)
    ingress = hook_of(doc, host, "veth0", "clsact/ingress")["entries"]
    assert [verdict_of(e) for e in ingress] == [
        ([0], ["accept"]),
        ([-1], ["continue"]),
        ([3], ["continue"]),
    ]
    egress = hook_of(doc, host, "veth0", "clsact/egress")["entries"]
    assert [verdict_of(e) for e in egress] == [
        ([-1], ["accept"]),
        ([0], ["continue"]),
        (None, ["accept", "continue"]),
        (None, None),
    ]
    assert "actions" in egress[3]["verdict"]["reason"]
    tcx = hook_of(doc, pod, "eth0", "tcx/ingress")["entries"]
    assert [verdict_of(e) for e in tcx] == [([1], ["continue"]), ([0], ["accept"])]
    assert all(e["verdict"]["basis"] == "static" for e in ingress + egress + tcx)

    code, out, _ = run(capsys, "scan", "--netns", host.name)
    assert code == 0
    lines = [line for line in out.splitlines() if "accepts" in line or "hands_on" in line]
    assert "accept" in lines[0].split() and "continue" in lines[1].split()


@pytest.fixture
def cilium_tree(box: Sandbox) -> tuple[Sandbox, Any, dict[str, int]]:
    host, _pod = pod_pair(box)
    programs, _calls = box.load_cilium_tree()
    box.attach(
        host,
        "veth0",
        "ingress",
        programs["cil_from_container"],
        pref=1,
        handle=1,
        name="cil_from_container-veth0",
    )
    return box, host, {name: prog.id for name, prog in programs.items()}


def test_explain_by_hook_and_by_id(
    cilium_tree: tuple[Sandbox, Any, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    _box, host, ids = cilium_tree
    code, out, err = run(
        capsys,
        "explain",
        "--netns",
        host.name,
        "--dev",
        "veth0",
        "--hook",
        "clsact/ingress",
        "--pref",
        "1",
        "--format",
        "json",
    )
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    root = doc["program"]
    assert root["program"]["id"] == ids["cil_from_container"]
    assert root["possible"] == [0, 2, 7]
    assert root["names"] == ["TC_ACT_OK", "TC_ACT_SHOT", "TC_ACT_REDIRECT"]
    assert "prog array" in root["reason"]
    exits = [line for line in root["disassembly"] if "returns" in line]
    assert exits and all(line["text"] == "exit" for line in exits)
    targets = {t["program"]["id"]: t for t in doc["tail_call_targets"]}
    assert set(targets) == {ids[n] for n in ids if n != "cil_from_container"}
    assert targets[ids["cil_handle_ipv6"]]["possible"] == [0, 2, 7]
    assert targets[ids["cil_policy"]]["possible"] == [0, 2]
    [attachment] = doc["attachments"]
    assert attachment["pref"] == 1 and attachment["mode"] == "direct-action"
    assert attachment["effective"] == ["accept", "drop", "redirect"]
    assert "never reach a classifier that runs after it" in doc["summary"]

    code, text, err = run(capsys, "explain", str(ids["cil_from_container"]), "--netns", host.name)
    assert code == 0, err
    assert "returns: TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT" in text
    assert f"--- tail-call target {ids['cil_policy']} ---" in text
    assert "call bpf_tail_call#12" in text
    assert "; returns TC_ACT_OK, TC_ACT_SHOT" in text
    assert "summary:" in text


def test_explain_errors(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    host, _pod = pod_pair(box)
    box.attach(host, "veth0", "ingress", box.load_returning(0, "a"), pref=1, handle=1)
    box.attach(host, "veth0", "ingress", box.load_returning(0, "b"), pref=1, handle=2)
    for args in (
        ["explain", "2147483000"],
        ["explain", "--netns", host.name, "--hook", "clsact/ingress", "--pref", "7"],
        ["explain", "--netns", host.name, "--hook", "clsact/ingress", "--pref", "1"],
        ["explain", "--netns", host.name],
    ):
        code, out, err = run(capsys, *args)
        assert code == 2, (args, err)
        assert out == "" and len(err.strip().splitlines()) == 1, err
    code, out, err = run(
        capsys,
        "explain",
        "--netns",
        host.name,
        "--hook",
        "clsact/ingress",
        "--pref",
        "1",
        "--position",
        "1",
    )
    assert code == 0 and "program" in out and "(direct-action): accept" in out
