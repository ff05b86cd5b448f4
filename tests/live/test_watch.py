"""`tcaudit watch` against real changes made by other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tcaudit.lab.sandbox import Sandbox
from tcaudit.live.watch import Watcher
from tcaudit.model import WatchEvent, WatchFinding
from tcaudit.vendors.registry import load_registry
from tests.conftest import validate

pytestmark = pytest.mark.usefixtures("privileged")
ROOT = Path(__file__).resolve().parents[2]


def watching(box: Sandbox, names: list[str], **kwargs: Any) -> tuple[Watcher, list[Any]]:
    seen: list[WatchEvent | WatchFinding] = []
    watcher = Watcher(names, load_registry(), seen.append, **kwargs)
    watcher.start()
    return watcher, seen


def test_the_replace_then_delete_race_is_caught_with_its_actors(box: Sandbox) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(host, "lxc0")
    watcher, seen = watching(box, [host.name, pod.name])
    try:
        agent = subprocess.Popen(
            [sys.executable, "-m", "tcaudit.lab.scenarios", "_race", "agent", host.path, "lxc0"],
            cwd=ROOT,
        )
        cilium = subprocess.Popen(
            [sys.executable, "-m", "tcaudit.lab.scenarios", "_race", "cilium", host.path, "lxc0"],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (agent.poll() is None or cilium.poll() is None):
            watcher.step(0.05)
        watcher.step(0.1)
        assert agent.returncode == 0 and cilium.returncode == 0
    finally:
        watcher.finish()
    events = [e for e in seen if isinstance(e, WatchEvent)]
    what = [
        (
            e.what,
            e.vendor.name if e.vendor else None,
            e.actor.comm if e.actor else None,
            e.actor.pid if e.actor else None,
        )
        for e in events
        if e.what.startswith("filter-")
    ]
    assert what == [
        ("filter-added", "Datadog CWS", "system-probe", agent.pid),
        ("filter-replaced", "Cilium", "cilium-agent", cilium.pid),
        ("filter-deleted", "Cilium", "system-probe", agent.pid),
    ]
    replaced = events[[e.what for e in events].index("filter-replaced")]
    assert replaced.previous_vendor is not None
    assert replaced.previous_vendor.name == "Datadog CWS"
    findings = {f.kind: f.message for f in seen if isinstance(f, WatchFinding)}
    assert "Datadog CWS's filter replaced by Cilium" in findings["vendor-replaced"]
    assert (
        f"deleted by system-probe[{agent.pid}], not by cilium-agent[{cilium.pid}]"
        in findings["deleted-by-other"]
    )
    assert "without Cilium's filter" in findings["hook-gap"]  # pod lost connectivity


def test_lost_filters_namespaces_and_tcx_are_reported(box: Sandbox) -> None:
    host = box.namespace("host")
    pods = [box.namespace(f"p{i}") for i in range(2)]
    for i, pod in enumerate(pods):
        box.veth(host, f"lxc{i}", pod, "eth0")
        box.clsact(host, f"lxc{i}")
        box.attach(
            host,
            f"lxc{i}",
            "ingress",
            box.load_returning(0, "cil_from_contai"),
            pref=1,
            handle=1,
            name=f"cil_from_container-lxc{i}",
        )
    watcher, seen = watching(box, [], tcx_interval=0.05, rediscover_interval=0.2)
    try:
        box.tcx_attach(host, "lxc0", "ingress", box.load_returning(0, "tcx_front"))
        host.nl.delete_link(host.ifindex("lxc1"))  # its filters get no event of their own
        late = box.namespace("late")
        for _ in range(20):
            watcher.step(0.05)
    finally:
        watcher.finish()
    events = [e for e in seen if isinstance(e, WatchEvent)]
    kinds = [(e.what, e.interface) for e in events if e.netns == host.name]
    assert ("tcx-attached", "lxc0") in kinds
    assert ("link-deleted", "lxc1") in kinds and ("filter-lost", "lxc1") in kinds
    assert any(e.what == "namespace-added" and e.netns == late.name for e in events)
    findings = [f.kind for f in seen if isinstance(f, WatchFinding)]
    assert "tcx-in-front" in findings


def test_cli_jsonl_stream_and_summary(box: Sandbox) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(host, "lxc0")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tcaudit",
            "watch",
            "--format",
            "jsonl",
            "--duration",
            "5s",
            "--netns",
            host.name,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    prog = box.load_returning(0, "x")
    time.sleep(0.5)
    # add and delete a few times: however long the watch takes to start, it sees some
    for round_ in range(6):
        ref = box.attach(host, "lxc0", "ingress", prog, pref=3, handle=1, name="mine")
        time.sleep(0.25)
        box.detach(ref)
        time.sleep(0.25)
        del round_
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        validate(line)
    assert lines[-1]["type"] == "summary"
    added = [line for line in lines if line["type"] == "event" and line["what"] == "filter-added"]
    assert added and lines[-1]["events"]["filter-added"] == len(added)
    assert all((a["pref"], a["filter_name"]) == (3, "mine") for a in added)
    assert all(a["actor"]["pid"] == os.getpid() for a in added)  # this test made them


def test_pref_deletes_flushes_new_links_and_no_gap_for_gone_links(box: Sandbox) -> None:
    host = box.namespace("host")
    pods = [box.namespace(f"p{i}") for i in range(2)]
    for i, pod in enumerate(pods):
        box.veth(host, f"lxc{i}", pod, "eth0")
        box.clsact(host, f"lxc{i}")
    prog = box.load_returning(0, "cil_from_contai")
    for handle in (1, 2):
        box.attach(
            host,
            "lxc0",
            "ingress",
            prog,
            pref=5,
            handle=handle,
            name=f"cil_from_container-lxc0-{handle}",
        )
    box.attach(host, "lxc1", "egress", prog, pref=1, handle=1, name="cil_from_container-lxc1")
    watcher, seen = watching(box, [host.name, *(p.name for p in pods)], tcx_interval=0.05)
    try:
        # one message deletes a whole pref, another flushes a whole hook
        subprocess.run(
            ["tc", "-n", host.name, "filter", "del", "dev", "lxc0", "ingress", "pref", "5"],
            check=True,
        )
        subprocess.run(
            ["tc", "-n", host.name, "filter", "del", "dev", "lxc1", "egress"], check=True
        )
        for _ in range(5):
            watcher.step(0.05)
        # a link made during the watch gets a TCX program at once
        late = box.namespace("late")
        box.veth(host, "lxc9", late, "eth0")
        box.tcx_attach(host, "lxc9", "ingress", box.load_returning(0, "tcx_new"))
        for _ in range(5):
            watcher.step(0.05)
        host.nl.delete_link(host.ifindex("lxc0"))  # its hook goes: no gap to report
        for _ in range(5):
            watcher.step(0.05)
    finally:
        watcher.finish()
    events = [e for e in seen if isinstance(e, WatchEvent)]
    deleted = sorted((e.interface, e.pref, e.handle) for e in events if e.what == "filter-deleted")
    assert deleted == [("lxc0", 5, 1), ("lxc0", 5, 2), ("lxc1", 1, 1)]
    # tc has exited by the time these are read: the port id still says who it was
    assert all(e.actor and e.actor.portid for e in events if e.what == "filter-deleted")
    assert ("tcx-attached", "lxc9") in [(e.what, e.interface) for e in events]
    gaps = [f for f in seen if isinstance(f, WatchFinding) and f.kind == "hook-gap"]
    assert [g.interface for g in gaps] == ["lxc1"]  # emptied by the flush, still there


def test_an_overrun_is_reported_and_followed_by_a_rescan(box: Sandbox) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(host, "lxc0")
    watcher, seen = watching(box, [host.name], receive_buffer=4096)
    try:
        prog = box.load_returning(-1, "burst")
        for pref in range(100, 400):  # far more notifications than 4 KiB can queue
            box.attach(host, "lxc0", "ingress", prog, pref=pref, handle=1, name="burst")
        watcher.step(0.2)
    finally:
        watcher.finish()
    events = [e for e in seen if isinstance(e, WatchEvent)]
    assert any(e.what == "events-lost" for e in events)
    assert watcher.summary.lost >= 1
    assert "events-lost" in {f.kind for f in seen if isinstance(f, WatchFinding)}
    # delivered + rescanned: every one of the 300 filters was reported exactly once
    added = [e.pref for e in events if e.what == "filter-added"]
    assert sorted(added) == list(range(100, 400))
    assert any(e.note and "rescan" in e.note for e in events)


def test_a_namespace_going_away_loses_its_filters_and_its_bookkeeping(box: Sandbox) -> None:
    from tcaudit.kernel import nsfs

    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(pod, "eth0")
    prog = box.load_returning(0, "ztunnel_ingress")
    box.attach(pod, "eth0", "ingress", prog, pref=1, handle=1, name="ztunnel_ingress")
    watcher, seen = watching(box, [], rediscover_interval=0.1, gap=0.01)
    try:
        box.attach(pod, "eth0", "ingress", prog, pref=2, handle=1, name="ztunnel_ingress")
        watcher.step(0.1)
        assert len(watcher._piling) == 1  # Istio's programs at prefs 1 and 2
        nsfs.delete_named_netns(pod.name)  # no name, no process: gone for discovery
        for _ in range(10):
            watcher.step(0.05)
        # nothing kept about a namespace that is gone: long watches stay bounded
        assert watcher._gaps == {} and watcher._piling == set()
    finally:
        watcher.finish()
    events = [(e.what, e.netns) for e in seen if isinstance(e, WatchEvent)]
    assert ("namespace-gone", pod.name) in events and ("filter-lost", pod.name) in events
    assert [f.kind for f in seen if isinstance(f, WatchFinding)] == ["piling"]  # no gap


def test_watch_and_scan_attribute_the_same_filter_the_same_way(box: Sandbox) -> None:
    """One entry_from_filter() for both. A CNI known by its position only (interface,
    pref 1, handle 1, any namespace) owns an eBPF filter there, never a classic-BPF one:
    watch's own copy once called every cls_bpf filter "bpf" and gave it to the CNI."""
    from tcaudit.inventory.scan import Selection, scan
    from tcaudit.vendors.attribution import add_vendors
    from tcaudit.vendors.registry import parse_registry

    posed = {
        "id": "poscni-1",
        "vendor": "PosCNI",
        "versions": "1.0+",
        "default_pref": 1,
        "default_handle": 1,
        "accept_verdict": "TC_ACT_OK",
        "knob": "--pref=N",
        "habits": [],
        "matchers": {"interface": ["lxc.*"], "hook": ["clsact/ingress", "clsact/egress"]},
    }
    text = json.dumps({"schema": "tcaudit/vendors/v1", "fingerprints": [posed]})
    registry = (*load_registry(), *parse_registry(text, "checked against source"))
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "lxc0", pod, "eth0")
    box.clsact(host, "lxc0")
    seen: list[WatchEvent | WatchFinding] = []
    watcher = Watcher([host.name, pod.name], registry, seen.append)
    watcher.start()
    try:
        tc = ["tc", "-n", host.name, "filter", "add", "dev", "lxc0"]
        # classic BPF "ret #0xffff" where the CNI puts its filter (pref 1, handle 1)
        subprocess.run(
            [*tc, "ingress", "pref", "1", "handle", "1", "bpf", "bytecode", "1,6 0 0 65535,"],
            check=True,
        )
        prog = box.load_returning(0, "unnamed_ok")
        box.attach(host, "lxc0", "egress", prog, pref=1, handle=1)
        for _ in range(10):
            watcher.step(0.05)
    finally:
        watcher.finish()
    added = {
        e.hook: (e.kind, e.vendor.name if e.vendor else None)
        for e in seen
        if isinstance(e, WatchEvent) and e.what == "filter-added" and e.interface == "lxc0"
    }
    result = add_vendors(scan(Selection(netns=(host.name,))), registry)
    scanned = {
        hook.hook: (entry.kind, entry.vendor.name if entry.vendor else None)
        for ns in result.namespaces
        for iface in ns.interfaces
        if iface.name == "lxc0"
        for hook in iface.hooks
        for entry in hook.entries
    }
    assert added == scanned
    assert added == {"clsact/ingress": ("cbpf", None), "clsact/egress": ("bpf", "PosCNI")}
