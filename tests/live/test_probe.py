"""The probe on live hooks: what observers count, and that they leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tcaudit.lab.sandbox import Sandbox
from tcaudit.live.probe.conclusions import conclude
from tcaudit.model import Entry, Netns, ObserverResult, Placement, Plan, Verdict
from tests.conftest import validate
from tests.nodes import Node, node, run_json

pytestmark = pytest.mark.usefixtures("privileged")
ROOT = Path(__file__).resolve().parents[2]


def probe_doc(capsys: pytest.CaptureFixture[str], n: Node, *extra: str) -> dict[str, Any]:
    code, doc = run_json(
        capsys,
        "probe",
        "--format",
        "json",
        "--duration",
        "0.8s",
        "--generate",
        *n.selectors(),
        *extra,
    )
    assert code == 0
    validate(doc)
    return doc


def observer_at(
    doc: dict[str, Any], pref: int, interface: str = "lxc0", hook: str = "clsact/ingress"
) -> dict[str, Any]:
    [found] = [
        o
        for o in doc["observers"]
        if (o["pref"], o["interface"], o["hook"]) == (pref, interface, hook)
    ]
    return found


def chains(n: Node) -> list[tuple[Any, ...]]:
    """Every filter on the node's hooks: what must be identical before and after."""
    from tcaudit.inventory.scan import Selection, scan

    result = scan(Selection(netns=tuple(ns.name for ns in n.namespaces)))
    return [
        (
            ns.netns.id,
            i.name,
            h.hook,
            e.pref,
            e.handle,
            e.kind,
            e.filter_name,
            e.program.id if e.program else None,
            e.program.tag if e.program else None,
            index,
        )
        for ns in result.namespaces
        for i in ns.interfaces
        for h in i.hooks
        for index, e in enumerate(h.entries)
    ]


def test_accepting_vendor_at_pref_1_hides_everything_after_it(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.cilium()
    before = chains(n)
    doc = probe_doc(capsys, n)
    # free prefs only: nothing goes ahead of pref 1, so the interface counts what reaches it
    assert [o["pref"] for o in doc["observers"] if o["interface"] == "lxc0"] == [2, 9]
    behind = observer_at(doc, 2)
    assert behind["reference"] == "rx packets of lxc0" and behind["reference_packets"] >= 20
    assert behind["packets"] == 0 and behind["pass_ratio"] == 0 and not behind["shares_pref"]
    assert any("no free pref just below pref 1" in note for note in doc["notes"])
    assert observer_at(doc, 9)["roles"] == ["cws"]  # CWS holds 10: right before it
    [conclusion] = doc["conclusions"]
    assert conclusion["ends_chain_ratio"] == 1.0 and conclusion["agrees"] is True
    assert conclusion["vendor"] == "Cilium" and "ends the chain for 100%" in conclusion["message"]
    assert chains(n) == before  # every other filter identical: pref, handle, id, tag, order
    # --share-pref: an observer joins Cilium's pref 1 (added last, it runs first there)
    doc = probe_doc(capsys, n, "--share-pref")
    front = observer_at(doc, 1)
    assert front["shares_pref"] is True and front["reference"] == "rx packets of lxc0"
    assert front["packets"] >= 20 and front["pass_ratio"] >= 0.95
    assert chains(n) == before


def test_unspec_vendor_hands_packets_on(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.vendor_on_host_veths(
        -1, pref=3, filter_name="calico_from_workload_ep", prog_name="calico_from_wor"
    )
    doc = probe_doc(capsys, n)
    before, after = observer_at(doc, 2), observer_at(doc, 4)
    assert before["packets"] >= 20 and after["packets"] == before["packets"]
    assert after["pass_ratio"] == 1.0 and after["reference"] == "observer at pref 2"
    [conclusion] = doc["conclusions"]
    assert conclusion["ends_chain_ratio"] == 0.0 and "hands packets on" in conclusion["message"]
    assert observer_at(doc, 9)["packets"] == before["packets"]  # what reaches CWS: it all


@pytest.mark.parametrize(("value", "reaches"), [(0, False), (1, True)])
def test_tcx_program_in_front_of_clsact(
    box: Sandbox, capsys: pytest.CaptureFixture[str], value: int, reaches: bool
) -> None:
    n = node(box, pods=1)
    box.tcx_attach(n.host, "lxc0", "ingress", n.prog(value, "tcx_front"))
    doc = probe_doc(capsys, n, "--dev", "lxc0", "--dev", "eth0", "--at", "10")
    observed = observer_at(doc, 10)
    assert observed["reference_packets"] >= 20  # the interface received them...
    if reaches:
        assert observed["pass_ratio"] >= 0.95  # ...and any value but PASS/DROP/REDIRECT
    else:
        assert observed["packets"] == 0  # ...but TCX_PASS skipped every clsact filter


IN = "clsact/ingress"


def test_observer_sharing_a_vendor_pref_runs_first(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box, pods=1)
    n.vendor_on_host_veths(0, pref=5, handle=1, filter_name="vendor", prog_name="vendor_ok")
    doc = probe_doc(capsys, n, "--at", "5", "--at", "6")
    ingress = [o for o in doc["observers"] if (o["interface"], o["hook"]) == ("lxc0", IN)]
    assert [o["pref"] for o in ingress] == [6]
    [skip] = [s for s in doc["skipped"] if (s["interface"], s["hook"]) == ("lxc0", IN)]
    assert "pref 5 (at) holds another filter: observers take free prefs only" in skip["reason"]
    assert "cannot re-create the pref with another kind or protocol" in skip["reason"]
    doc = probe_doc(capsys, n, "--at", "5", "--at", "6", "--share-pref")
    shared = observer_at(doc, 5)
    assert shared["shares_pref"] is True and shared["pass_ratio"] >= 0.95
    assert observer_at(doc, 6)["packets"] == 0


def test_refuses_hooks_without_clsact_and_foreign_prefs(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(host, "lxc0")
    subprocess.run(
        [
            "tc",
            "-n",
            host.name,
            "filter",
            "add",
            "dev",
            "lxc0",
            "ingress",
            "pref",
            "7",
            "protocol",
            "ip",
            "u32",
            "match",
            "u32",
            "0",
            "0",
            "classid",
            "1:1",
        ],
        check=True,
    )
    code, doc = run_json(
        capsys,
        "probe",
        "--format",
        "json",
        "--duration",
        "0.2s",
        "--netns",
        host.name,
        "--netns",
        pod.name,
        "--at",
        "7",
        "--at",
        "8",
        "--hook",
        "clsact/ingress",
    )
    assert code == 0
    assert [(o["interface"], o["pref"]) for o in doc["observers"]] == [("lxc0", 8)]
    reasons = {(s["interface"], s["reason"].split(":")[0]) for s in doc["skipped"]}
    assert ("lxc0", "pref 7 is held by a non-bpf or non-'all' filter") in reasons
    assert ("eth0", "no clsact qdisc") in reasons
    assert (
        "clsact"
        not in subprocess.run(
            ["tc", "-n", pod.name, "qdisc", "show", "dev", "eth0"], capture_output=True, text=True
        ).stdout
    )


def test_at_on_hooks_without_clsact_says_why_in_one_line(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = box.namespace("pod")
    peer = box.namespace("peer")
    box.veth(pod, "eth0", peer, "eth1")
    from tcaudit.cli.main import main

    code = main(["probe", "--duration", "0.2s", "--netns", pod.name, "--at", "5"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"tcaudit: error: nothing to observe: lo clsact/ingress in {pod.name} and 3 more "
        "skipped: no clsact qdisc: nothing runs there (not created on a node hook)"
    ], err


def test_generate_only_in_namespaces_tcaudit_made(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """A namespace tcaudit did not make (a stand-in for a real pod) is refused for
    --generate, whatever its name, unless --generate-on-node; the sandbox's are fine."""
    from tcaudit.cli.main import main
    from tcaudit.kernel import nsfs

    host = box.namespace("host")
    name = f"{box.tag}-lookalike"  # a tcaudit-like name proves nothing
    # made like `ip netns add` does (a bind mount of a fresh netns), but not through the
    # sandbox, so nothing records it; `ip netns add` itself would also turn /run/netns
    # into a bind mount of its own, hiding the sandbox's mounts from their deletion
    nsfs.create_named_netns(name)
    try:
        subprocess.run(
            ["ip", "link", "add", "lxc0", "netns", host.name, "type", "veth", "peer", "name",
             "eth0", "netns", name],
            check=True,
        )
        box.clsact(host, "lxc0")
        box.attach(host, "lxc0", "ingress", box.load_returning(-1, "v"), pref=3, handle=1)
        args = ["probe", "--duration", "0.3s", "--generate", "--netns", host.name,
                "--netns", name, "--format", "json"]
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1
        assert f"{name} were not made by tcaudit" in err and "--generate-on-node" in err
        assert main([*args, "--generate-on-node"]) == 0
        capsys.readouterr()
        # the sandbox's own namespaces alone are fine
        assert main(["probe", "--duration", "0.3s", "--generate", "--netns", host.name]) == 0
    finally:
        nsfs.delete_named_netns(name)


def _start_probe(n: Node, state_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TCAUDIT_PROBE_STATE_DIR": str(state_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "tcaudit", "probe", "--duration", "60s", *n.selectors()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_observers(n: Node, proc: subprocess.Popen[str], expected: int) -> None:
    """Until all ``expected`` observers are attached (the probe then only counts)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [c for c in chains(n) if (c[6] or "").startswith("tcaudit_probe")]
        if len(found) >= expected:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the probe never attached its observers")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_and_sigterm_remove_every_observer(
    box: Sandbox, tmp_path: Path, sig: int, code: int
) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.cilium()
    before = chains(n)
    proc = _start_probe(n, tmp_path)
    try:
        _wait_for_observers(n, proc, 2)  # after 1, and right before CWS's 10
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert chains(n) == before
    assert list(tmp_path.glob("*.json")) == []  # the state file goes with the observers


def test_sigkill_leaves_marked_observers_that_cleanup_removes(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.cilium()
    before = chains(n)
    proc = _start_probe(n, tmp_path)
    try:
        _wait_for_observers(n, proc, 2)
        left = len([c for c in chains(n) if (c[6] or "").startswith("tcaudit_probe")])
    finally:
        proc.kill()
        proc.wait()
    assert left >= 2 and chains(n) != before
    [state] = tmp_path.glob("*.json")
    assert len(json.loads(state.read_text())["observers"]) == left
    monkeypatch.setenv("TCAUDIT_PROBE_STATE_DIR", str(tmp_path))
    from tcaudit.cli.main import main

    # until removed, the left-behind observers are known as tcaudit's by their records
    assert main(["scan", "--format", "json", *n.selectors()]) == 0
    doc = json.loads(capsys.readouterr().out)
    marked = [
        (e["filter_name"], e["observer"])
        for ns in doc["namespaces"]
        for i in ns["interfaces"]
        for h in i["hooks"]
        for e in h["entries"]
        if (e["filter_name"] or "").startswith("tcaudit_probe")
    ]
    assert len(marked) == left and all(observer for _, observer in marked)
    assert main(["probe", "--cleanup"]) == 0
    out = capsys.readouterr().out
    assert out.count("removed: tcaudit_probe_") == left
    assert chains(n) == before  # exactly the observers, nothing else
    assert main(["probe", "--cleanup"]) == 0
    assert "nothing to clean up" in capsys.readouterr().out


def test_a_refused_observer_is_exit_3_in_one_line(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel refusing the observer (no BPF, a lockdown): exit 3, one line; scan and
    recommend keep working. Without bcc the probe works (tests/live/test_observer.py)."""
    n = node(box, pods=1)
    n.vendor_on_host_veths(0, pref=1, filter_name="v", prog_name="v")
    from tcaudit.cli.main import main
    from tcaudit.kernel import bpf

    def refuse(*args: object, **kwargs: object) -> int:
        raise bpf.BpfError(1, "BPF_PROG_LOAD observe", "")

    monkeypatch.setattr(bpf, "prog_load", refuse)
    code = main(["probe", "--duration", "0.2s", *n.selectors()])
    err = capsys.readouterr().err
    assert code == 3 and "the kernel refused the observer program" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["selftest"]) == 3
    assert "FAILED at step 'observer load'" in capsys.readouterr().out
    assert main(["recommend", *n.selectors()]) == 0


def test_selftest_passes(capsys: pytest.CaptureFixture[str]) -> None:
    from tcaudit.cli.main import main

    assert main(["selftest"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "tcaudit self test: OK"
    assert "front saw" in out


def test_a_disagreement_is_flagged_loudly() -> None:
    """Static analysis is sound, so this cannot happen on a real program: check the
    wording the probe uses if the kernel ever proves the analysis wrong."""
    ns = Netns(id=1, dev=1, names=("x",), pids=(), label="x", path="/x")
    entry = Entry(
        pref=3,
        handle=1,
        chain=0,
        protocol="all",
        kind="bpf",
        direct_action=True,
        filter_name="claims_unspec",
        program=None,
        verdict=Verdict((-1,), ("continue",), "static", None),
    )
    placement = Placement(ns, "lxc0", 2, "clsact/ingress", 2, ("before 3",), False)
    after = Placement(ns, "lxc0", 2, "clsact/ingress", 4, ("after 3",), False)
    from tcaudit.model import Counts

    observers = [
        ObserverResult(placement, 1, 1, Counts(packets=100), 100, "rx", 1.0),
        ObserverResult(after, 2, 2, Counts(packets=40), 100, "obs", 0.4),
    ]
    plan = Plan((placement, after), (), ((ns, "lxc0", "clsact/ingress", entry),), 10)
    conclusion = conclude(plan, plan.subjects[0], observers)
    assert conclusion.agrees is False
    assert conclusion.message.startswith(
        "DISAGREEMENT: claims_unspec at pref 3 ends the chain for 60%"
    )


def test_before_observer_never_runs_ahead_of_another_filter(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box, pods=1)
    n.vendor_on_host_veths(0, pref=5, filter_name="acceptor", prog_name="acceptor")
    n.vendor_on_host_veths(-1, pref=6, filter_name="passer", prog_name="passer")
    doc = probe_doc(capsys, n, "--dev", "lxc0", "--dev", "eth0")
    roles = {o["pref"]: o["roles"] for o in doc["observers"] if o["interface"] == "lxc0"}
    assert roles[4] == ["before 5"] and roles[7] == ["after 6"] and 6 not in roles
    passer = next(c for c in doc["conclusions"] if c["filter_name"] == "passer")
    assert passer["agrees"] is None  # the acceptor runs between: no false DISAGREEMENT
    assert "run between the nearest observer and it" in passer["message"]
    acceptor = next(c for c in doc["conclusions"] if c["filter_name"] == "acceptor")
    assert "pref 6 is taken; --share-pref joins it" in acceptor["message"]
    doc = probe_doc(capsys, n, "--dev", "lxc0", "--dev", "eth0", "--share-pref")
    roles = {o["pref"]: o["roles"] for o in doc["observers"] if o["interface"] == "lxc0"}
    assert roles[4] == ["before 5"] and "before 6" in roles[6] and "after 6" in roles[7]
    passer = next(c for c in doc["conclusions"] if c["filter_name"] == "passer")
    assert passer["agrees"] is None  # nothing reached it: no false DISAGREEMENT
    assert "no traffic reached it" in passer["message"]


def test_shared_block_hooks_are_skipped(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    host.nl.add_clsact(host.ifindex("lxc0"), ingress_block=9)
    prog = box.load_returning(0, "on_block")
    host.nl.add_bpf_filter(0, 0, pref=2, handle=1, prog_fd=prog.fd, name="on_block", block=9)
    from tcaudit.cli.main import main

    assert (
        main(
            [
                "probe",
                "--duration",
                "0.2s",
                "--netns",
                host.name,
                "--hook",
                "clsact/ingress",
                "--at",
                "3",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "shared block 9" in err and "nothing to observe" in err
