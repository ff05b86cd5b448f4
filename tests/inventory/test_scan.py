"""The scanner against the real kernel: every test builds its own namespaces and traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tcaudit.cli.main import main
from tcaudit.inventory.programs import ProgramReader
from tcaudit.kernel import abi, bpf, nsfs
from tcaudit.kernel.rtnl import RTNLGRP_TC, Netlink
from tcaudit.lab.sandbox import Namespace, Sandbox
from tests.conftest import validate

pytestmark = pytest.mark.usefixtures("privileged")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def scan_doc(
    capsys: pytest.CaptureFixture[str], *namespaces: Namespace, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    args = ["scan", "--format", "json", *extra]
    for ns in namespaces:
        args += ["--netns", ns.name]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    validate(doc)
    return doc


def hook_of(doc: dict[str, Any], ns: Namespace, dev: str, hook: str) -> dict[str, Any]:
    for namespace in doc["namespaces"]:
        if ns.name in namespace["names"]:
            for interface in namespace["interfaces"]:
                if interface["name"] == dev:
                    for h in interface["hooks"]:
                        if h["hook"] == hook:
                            return dict(h)
    raise AssertionError(f"{ns.name} {dev} {hook} not in the scan")


def pod_pair(box: Sandbox) -> tuple[Namespace, Namespace]:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "veth0", pod, "eth0")
    box.clsact(host, "veth0")
    box.clsact(pod, "eth0")
    return host, pod


def test_inventory_matches_the_kernel(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    host, pod = pod_pair(box)
    vendor = box.load_returning(0, "vendor_ok")
    agent = box.load_returning(-1, "agent_unspec")
    box.attach(
        host, "veth0", "ingress", vendor, pref=1, handle=1, name="bpf_lxc.o:[from-container]"
    )
    box.attach(host, "veth0", "ingress", agent, pref=10, handle=3, name="classifier_ingress_1")
    box.attach(
        pod,
        "eth0",
        "egress",
        agent,
        pref=10,
        handle=1,
        name="classifier_egress_1",
        direct_action=False,
    )

    doc = scan_doc(capsys, host, pod)
    ingress = hook_of(doc, host, "veth0", "clsact/ingress")
    assert ingress["supported"] and ingress["qdisc"] == "clsact"
    assert [(e["pref"], e["handle"], e["filter_name"]) for e in ingress["entries"]] == [
        (1, "0x1", "bpf_lxc.o:[from-container]"),
        (10, "0x3", "classifier_ingress_1"),
    ]
    first = ingress["entries"][0]
    info = bpf.prog_info(vendor.fd)
    assert first["program"]["id"] == info.id == vendor.id
    assert first["program"]["tag"] == info.tag
    assert first["program"]["name"] == "vendor_ok"
    assert first["program"]["type"] == "sched_cls"
    assert first["program"]["insns"] == 2
    assert first["program"]["uid"] == 0
    assert first["program"]["loaded_at"].endswith("Z")
    assert {"pid": os.getpid(), "comm": Path("/proc/self/comm").read_text().strip(),
            "exe": Path(os.readlink("/proc/self/exe")).name} in first["program"]["holders"]
    assert first["direct_action"] is True and first["protocol"] == "all"
    assert first["kind"] == "bpf" and first["chain"] == 0

    egress = hook_of(doc, pod, "eth0", "clsact/egress")
    assert [(e["pref"], e["direct_action"], e["program"]["id"]) for e in egress["entries"]] == [
        (10, False, agent.id)
    ]
    # the other hooks are there, empty, and lo (no qdisc) says why
    assert hook_of(doc, host, "veth0", "clsact/egress")["entries"] == []
    lo = hook_of(doc, pod, "lo", "clsact/ingress")
    assert lo["supported"] is False and lo["note"] == "no clsact qdisc"
    assert doc["host"]["tcx"] is True


def test_same_pref_the_newest_runs_first_and_is_listed_first(
    box: Sandbox, count_c: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kernel fact (cls_bpf puts a new program at the head of its pref's list)."""
    host, pod = pod_pair(box)
    front = box.load_c(count_c, "count")  # pref 3, hands on: sees everything
    older = box.load_c(count_c, "count")  # pref 5 handle 1, hands on
    newer = box.load_c(count_c, "count", cflags=["-DVERDICT=0"])  # pref 5 handle 2, accepts
    box.attach(host, "veth0", "ingress", front, pref=3, handle=1, name="front")
    box.attach(host, "veth0", "ingress", older, pref=5, handle=1, name="older")
    box.attach(host, "veth0", "ingress", newer, pref=5, handle=2, name="newer")

    sent = box.send_udp(pod, "198.18.0.1", count=25)
    time.sleep(0.2)
    assert sent == 25
    assert box.count(front) >= 25
    assert box.count(newer) == box.count(front)  # ran first at pref 5 and accepted...
    assert box.count(older) == 0  # ...so the older filter never saw a packet

    entries = hook_of(scan_doc(capsys, host), host, "veth0", "clsact/ingress")["entries"]
    assert [e["filter_name"] for e in entries] == ["front", "newer", "older"]


def test_tcx_programs_listed_first_in_mprog_order(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    host, _pod = pod_pair(box)
    first = box.load_returning(-1, "tcx_first")
    second = box.load_returning(-1, "tcx_second")
    linked = box.tcx_attach(host, "veth0", "ingress", first, link=True)
    attached = box.tcx_attach(host, "veth0", "ingress", second, link=False)
    box.attach(host, "veth0", "ingress", box.load_returning(-1, "legacy"), pref=1, handle=1)

    doc = scan_doc(capsys, host)
    interface = next(i for i in doc["namespaces"][0]["interfaces"] if i["name"] == "veth0")
    assert [h["hook"] for h in interface["hooks"]] == [
        "tcx/ingress",
        "clsact/ingress",
        "tcx/egress",
        "clsact/egress",
    ]
    tcx = interface["hooks"][0]
    assert [e["program"]["name"] for e in tcx["entries"]] == ["tcx_first", "tcx_second"]
    assert tcx["entries"][0]["link_id"] is not None and tcx["entries"][1]["link_id"] is None
    assert tcx["entries"][0]["pref"] is None and tcx["entries"][0]["kind"] == "tcx"
    assert tcx["link_ids"] == [tcx["entries"][0]["link_id"]]
    revision = tcx["revision"]

    box.tcx_detach(attached)
    box.tcx_detach(linked)
    after = hook_of(scan_doc(capsys, host), host, "veth0", "tcx/ingress")
    assert after["entries"] == [] and after["revision"] > revision


@pytest.mark.parametrize(("tcx_verdict", "clsact_sees"), [(0, False), (1, True), (-1, True)])
def test_tcx_runs_before_every_clsact_filter(
    box: Sandbox, count_c: Path, tcx_verdict: int, clsact_sees: bool
) -> None:
    """Kernel fact: TCX PASS skips clsact; any value but PASS/DROP/REDIRECT reaches it."""
    host, pod = pod_pair(box)
    counter = box.load_c(count_c, "count")
    box.tcx_attach(host, "veth0", "ingress", box.load_returning(tcx_verdict, "tcx_verdict"))
    box.attach(host, "veth0", "ingress", counter, pref=1, handle=1)
    before = box.count(counter)

    def rx_packets() -> int:
        return next(link.rx_packets for link in host.nl.links() if link.name == "veth0")

    rx_before = rx_packets()
    box.send_udp(pod, "198.18.0.1", count=20)
    time.sleep(0.2)
    assert rx_packets() - rx_before >= 20  # the packets did arrive on the hook
    if clsact_sees:
        assert box.count(counter) - before >= 20
    else:
        assert box.count(counter) - before == 0


def test_shared_block_is_read_once_and_shown_with_its_devices(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    host = box.namespace("host")
    pod_a = box.namespace("pa")
    pod_b = box.namespace("pb")
    box.veth(host, "lxc_a", pod_a, "eth0")
    box.veth(host, "lxc_b", pod_b, "eth0")
    for dev in ("lxc_a", "lxc_b"):
        host.nl.add_clsact(host.ifindex(dev), ingress_block=77)
    prog = box.load_returning(-1, "blockprog")
    host.nl.add_bpf_filter(0, 0, pref=4, handle=1, prog_fd=prog.fd, name="on_block", block=77)

    doc = scan_doc(capsys, host)
    for dev in ("lxc_a", "lxc_b"):
        hook = hook_of(doc, host, dev, "clsact/ingress")
        assert hook["block"] == 77
        assert sorted(hook["block_devices"]) == ["lxc_a", "lxc_b"]
        assert [(e["pref"], e["filter_name"]) for e in hook["entries"]] == [(4, "on_block")]
        assert hook_of(doc, host, dev, "clsact/egress")["entries"] == []


def test_other_kinds_classic_bpf_and_chains(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    host, _pod = pod_pair(box)
    tc = ["tc", "-n", host.name, "filter", "add", "dev", "veth0", "ingress"]
    subprocess.run(
        [
            *tc,
            "pref",
            "20",
            "protocol",
            "ip",
            "u32",
            "match",
            "ip",
            "dst",
            "192.0.2.1/32",
            "action",
            "mirred",
            "egress",
            "redirect",
            "dev",
            "veth0",
        ],
        check=True,
    )
    subprocess.run(
        [
            *tc,
            "pref",
            "30",
            "protocol",
            "ip",
            "u32",
            "match",
            "ip",
            "dst",
            "192.0.2.2/32",
            "classid",
            "1:1",
        ],
        check=True,
    )
    # classic BPF bytecode: "ret #0xffff" (one instruction)
    subprocess.run([*tc, "pref", "40", "bpf", "bytecode", "1,6 0 0 65535,"], check=True)
    prog = box.load_returning(0, "in_chain_1")
    host.nl.add_bpf_filter(
        host.ifindex("veth0"), 0xFFFFFFF2, pref=1, handle=1, prog_fd=prog.fd, name="chain1", chain=1
    )

    entries = hook_of(scan_doc(capsys, host), host, "veth0", "clsact/ingress")["entries"]
    kinds = [
        (e["pref"], e["kind"], e["protocol"], e["has_actions"], e["reachable"]) for e in entries
    ]
    assert kinds == [
        (20, "u32", "ip", True, True),
        (30, "u32", "ip", False, True),
        (40, "cbpf", "all", False, True),
        (1, "bpf", "all", False, False),  # chain 1: only a goto_chain reaches it
    ]
    assert entries[2]["cbpf_insns"] == 1 and entries[2]["program"] is None
    assert entries[3]["chain"] == 1


def test_scan_is_read_only(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    """Listen for tc notifications in the fixture namespaces while scanning.

    TCX changes make no netlink event: their mprog revision must stay the same instead.
    """
    host, pod = pod_pair(box)
    box.attach(host, "veth0", "ingress", box.load_returning(0, "p"), pref=1, handle=1)
    box.tcx_attach(pod, "eth0", "egress", box.load_returning(-1, "t"))
    listeners = []
    for ns in (host, pod):
        listener = Netlink(ns.fd)
        listener.subscribe(RTNLGRP_TC)
        listeners.append(listener)

    def tcx_revision() -> int:
        with nsfs.inside_netns(pod.fd):
            return bpf.tcx_query(pod.ifindex("eth0"), abi.BPF_TCX_EGRESS).revision

    try:
        # the listener works: a change we make is heard...
        extra = box.attach(host, "veth0", "egress", box.load_returning(-1, "x"), pref=2, handle=1)
        box.detach(extra)
        assert len(listeners[0].events(0.3)) >= 2
        revision = tcx_revision()
        # ...and a scan (table and JSON, every hook) makes none
        for fmt in ("table", "json"):
            code, _out, err = run(
                capsys, "scan", "--format", fmt, "--all", "--netns", host.name, "--netns", pod.name
            )
            assert code == 0, err
        assert [listener.events(0.3) for listener in listeners] == [[], []]
        assert tcx_revision() == revision
    finally:
        for listener in listeners:
            listener.close()


def test_table_groups_and_hides_empty_interfaces(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    host, pod = pod_pair(box)
    box.attach(
        host,
        "veth0",
        "ingress",
        box.load_returning(0, "vendor"),
        pref=1,
        handle=1,
        name="bpf_lxc.o:[from-container]",
    )
    code, out, _ = run(capsys, "scan", "--wide", "--netns", host.name, "--netns", pod.name)
    assert code == 0
    assert f"netns {host.name}" in out and "bpf_lxc.o:[from-container]" in out
    assert f"netns {pod.name}" not in out  # nothing on the pod's hooks
    assert "with nothing on their hooks, hidden: --all shows them" in out
    code, out, _ = run(capsys, "scan", "--all", "--netns", pod.name)
    assert code == 0 and "eth0" in out and "no clsact qdisc" in out


def test_dev_and_direction_select(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    host, pod = pod_pair(box)
    doc = scan_doc(capsys, host, pod, extra=("--dev", "eth0", "--direction", "egress"))
    # namespaces come in inode order, and the kernel reuses freed inode numbers
    names = {n["names"][0]: [i["name"] for i in n["interfaces"]] for n in doc["namespaces"]}
    assert names == {host.name: [], pod.name: ["eth0"]}
    [pod_doc] = [n for n in doc["namespaces"] if n["names"] == [pod.name]]
    hooks = [h["hook"] for h in pod_doc["interfaces"][0]["hooks"]]
    assert hooks == ["tcx/egress", "clsact/egress"]
    doc = scan_doc(capsys, pod, extra=("--hook", "clsact/ingress"))
    assert [h["hook"] for h in doc["namespaces"][0]["interfaces"][0]["hooks"]] == ["clsact/ingress"]


def test_usage_errors_exit_2_and_create_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"tcat-missing-{os.getpid()}"
    for args in (
        ["--netns", name],
        ["--netns", "pid:999999999"],
        ["--netns", "inode:1"],
        ["--netns", "/nonexistent/ns"],
        ["--dev", "no-such-dev0"],
        ["--hook", "clsact/sideways"],
        ["--netns", "/etc/hostname"],
        ["--netns", "/proc/1/ns/mnt"],
        ["--hook", "tcx/ingress", "--direction", "egress"],
    ):
        code, out, err = run(capsys, "scan", *args)
        assert code == 2, (args, err)
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(f"/run/netns/{name}")


def test_not_root_exits_3_with_one_line() -> None:
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-m",
            "tcaudit",
            "scan",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tcaudit: error: tcaudit scan needs CAP_SYS_ADMIN and CAP_NET_ADMIN and CAP_SYS_PTRACE "
        "(run it as root, e.g. with sudo)"
    ]


def test_unreadable_program_keeps_the_entry_with_a_reason() -> None:
    program = ProgramReader(holders=False).get(0x7FFFFFF0)
    assert program.id == 0x7FFFFFF0 and program.name is None and program.tag is None
    assert program.error is not None and "unreadable" in program.error


def test_module_and_console_script_entry_points() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "tcaudit", "--version"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and "tcaudit, version" in proc.stdout
    script = Path(sys.executable).parent / "tcaudit"
    proc = subprocess.run([str(script), "scan", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Examples:" in proc.stdout


def test_kernel_without_tcx_is_reported_not_an_error(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """This kernel has TCX, so make BPF_PROG_QUERY answer the way an old one does."""
    host, _pod = pod_pair(box)
    box.attach(host, "veth0", "ingress", box.load_returning(0, "legacy"), pref=1, handle=1)

    def no_tcx(ifindex: int, attach_type: int) -> bpf.TcxQuery:
        raise bpf.TcxUnsupported("BPF_PROG_QUERY: Invalid argument")

    monkeypatch.setattr(bpf, "tcx_query", no_tcx)
    doc = scan_doc(capsys, host)
    assert doc["host"]["tcx"] is False
    tcx = hook_of(doc, host, "veth0", "tcx/ingress")
    assert tcx["supported"] is False and tcx["note"] == "kernel has no TCX"
    assert len(hook_of(doc, host, "veth0", "clsact/ingress")["entries"]) == 1
    code, out, _ = run(capsys, "scan", "--netns", host.name)
    assert code == 0 and "kernel has no TCX" in out


def test_an_unreadable_program_leaves_its_entry_with_a_reason(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _pod = pod_pair(box)
    prog = box.load_returning(0, "vanishing")
    box.attach(host, "veth0", "ingress", prog, pref=1, handle=1, name="kept")
    real = bpf.prog_fd_by_id

    def refuse(prog_id: int) -> int:
        if prog_id == prog.id:
            raise bpf.BpfError(1, f"BPF_PROG_GET_FD_BY_ID {prog_id}")  # EPERM
        return real(prog_id)

    monkeypatch.setattr(bpf, "prog_fd_by_id", refuse)
    [entry] = hook_of(scan_doc(capsys, host), host, "veth0", "clsact/ingress")["entries"]
    assert entry["filter_name"] == "kept" and entry["pref"] == 1
    program = entry["program"]
    assert program["id"] == prog.id and program["name"] is None and program["tag"] is None
    assert "unreadable" in program["error"]
    assert entry["verdict"]["possible"] is None and entry["verdict"]["reason"]


def test_an_engine_crash_on_one_program_does_not_end_the_scan(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # one program whose analysis raises (a tcaudit bug) gets an unknown verdict with
    # the reason; the others keep theirs, the scan exits 0 and says so in one line
    from tcaudit.analysis import closure

    host, _pod = pod_pair(box)
    bad = box.load_returning(0, "tcat_crashes")
    good = box.load_returning(-1, "tcat_fine")
    box.attach(host, "veth0", "ingress", bad, pref=1, handle=1)
    box.attach(host, "veth0", "ingress", good, pref=2, handle=1)
    bad_id = bpf.prog_info(bad.fd).id
    real = closure.analyse  # (attach imports it when it first analyses)

    def flaky(code: Any, source: Any, **kw: Any) -> Any:
        if code == bad_id:  # attach analyses by program id
            raise IndexError("list assignment index out of range")
        return real(code, source, **kw)

    monkeypatch.setattr(closure, "analyse", flaky)
    code, out, err = run(capsys, "scan", "--format", "json", "--netns", host.name)
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    entries = {e["pref"]: e for e in hook_of(doc, host, "veth0", "clsact/ingress")["entries"]}
    assert entries[1]["verdict"]["possible"] is None
    assert entries[1]["verdict"]["reason"] == (
        "internal error: IndexError: list assignment index out of range"
    )
    assert entries[1]["program"]["error"] is None
    assert entries[2]["verdict"]["possible"] == [-1]
    lines = [line for line in err.splitlines() if "internal error" in line]
    assert len(lines) == 1 and lines[0].startswith("tcaudit: warning: program ")


def test_the_verdict_cache_is_reused_and_never_stale(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second scan reuses the first one's analysis without reading the code again; a
    # vendor re-pointing a prog-array slot makes it analyse again; read-only on hooks
    import struct

    from tcaudit.analysis import closure
    from tcaudit.bpf import source_path

    host, _pod = pod_pair(box)
    programs, table = box.load_tree(
        source_path("lab/verdicts.c"), ("tail_root", "tail_ok", "tail_shot"), "verdict_jmp",
        {"tail_ok": 0},
    )
    box.attach(host, "veth0", "ingress", programs["tail_root"], pref=1, handle=1)
    runs: list[int] = []
    real = closure.analyse  # (attach imports it when it first analyses)

    def counting(code: Any, source: Any, **kw: Any) -> Any:
        runs.append(code)
        return real(code, source, **kw)

    monkeypatch.setattr(closure, "analyse", counting)

    def verdict() -> list[int]:
        doc = scan_doc(capsys, host)
        (entry,) = hook_of(doc, host, "veth0", "clsact/ingress")["entries"]
        return list(entry["verdict"]["possible"])

    assert verdict() == [-1, 0] and len(runs) == 1
    assert verdict() == [-1, 0] and len(runs) == 1  # from the cache
    bpf.map_update(table, struct.pack("=I", 1), struct.pack("=I", programs["tail_shot"].fd))
    assert verdict() == [-1, 0, 2] and len(runs) == 2  # the slots changed: analysed again
    code, _out, _err = run(capsys, "scan", "--format", "json", "--no-cache", "--netns", host.name)
    assert code == 0 and len(runs) == 3


def test_a_dump_that_stays_interrupted_makes_the_scan_partial(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel keeps marking the filter dump interrupted: a warning and "partial"."""
    from tcaudit.kernel import rtnl

    host, _pod = pod_pair(box)
    real = rtnl.Netlink._dump

    def dump(self: rtnl.Netlink, mtype: int, body: bytes, attempts: int = 5) -> list[bytes]:
        out = real(self, mtype, body, attempts)
        if mtype == rtnl.RTM_GETTFILTER:
            self.interrupted.append("filters")
        return out

    monkeypatch.setattr(rtnl.Netlink, "_dump", dump)
    code, out, err = run(capsys, "scan", "--format", "json", "--netns", host.name)
    assert code == 0
    doc = json.loads(out)
    validate(doc)
    assert doc["partial"] is True
    assert f"namespace {host.name}: the kernel's dump of its filters stayed interrupted" in err
    monkeypatch.setattr(rtnl.Netlink, "_dump", real)
    assert json.loads(run(capsys, "scan", "--format", "json", "--netns", host.name)[1])[
        "partial"
    ] is False
