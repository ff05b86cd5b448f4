"""Namespace discovery, labels, selectors, and scanning while namespaces come and go."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tcaudit.cli.options import resolve_lab
from tcaudit.errors import UsageError
from tcaudit.inventory.namespaces import cgroup_identity, discover, select
from tcaudit.inventory.scan import Selection, scan
from tcaudit.lab import sandbox

CONTAINER = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e0a2c5e5e8e1e1c5b2f3a4d6"


@pytest.mark.parametrize(
    ("cgroup", "container", "pod_uid"),
    [
        (f"0::/system.slice/docker-{CONTAINER}.scope\n", CONTAINER[:12], None),
        (f"12:pids:/docker/{CONTAINER}\n", CONTAINER[:12], None),
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-"
            f"{CONTAINER}.scope\n",
            CONTAINER[:12],
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ),
        (
            f"0::/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/crio-{CONTAINER}\n",
            CONTAINER[:12],
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ),
        ("0::/user.slice/user-0.slice/session-3.scope\n", None, None),
    ],
)
def test_cgroup_identity(cgroup: str, container: str | None, pod_uid: str | None) -> None:
    assert cgroup_identity(cgroup) == (container, pod_uid)


@pytest.fixture
def anonymous_netns(privileged: None) -> object:
    """A namespace with no name, held only by a process (like a container's)."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if (
                    os.stat(f"/proc/{proc.pid}/ns/net").st_ino
                    != os.stat("/proc/self/ns/net").st_ino
                ):
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_discovery_finds_self_named_and_process_namespaces(
    box: sandbox.Sandbox, anonymous_netns: subprocess.Popen[bytes]
) -> None:
    named = box.namespace("named")
    known = discover()
    assert known[0].is_self and known[0].label.startswith("self")
    assert os.getpid() in known[0].pids
    by_name = [ns for ns in known if named.name in ns.names]
    assert len(by_name) == 1 and by_name[0].label == named.name
    assert by_name[0].id == os.stat(named.path).st_ino
    pid = anonymous_netns.pid
    held = [ns for ns in known if pid in ns.pids]
    assert len(held) == 1
    assert held[0].names == () and held[0].label.startswith(f"pid {pid} (sleep)")
    # deduplicated by inode: every namespace once
    assert len({(ns.dev, ns.id) for ns in known}) == len(known)

    # every selector form resolves to the same namespace
    inode = held[0].id
    for selector in (f"pid:{pid}", f"inode:{inode}", f"/proc/{pid}/ns/net"):
        chosen = select(known, [selector])
        assert [ns.id for ns in chosen] == [inode], selector
    assert [ns.id for ns in select(known, [named.path])] == [by_name[0].id]
    assert [ns.is_self for ns in select(known, ["self"])] == [True]
    assert len(select(known, ["all"])) == len(known) == len(select(known, []))
    both = select(known, [named.name, f"pid:{pid}", named.name])
    assert sorted(ns.id for ns in both) == sorted([inode, by_name[0].id])


def test_selectors_never_create_a_namespace(privileged: None) -> None:
    name = f"tcat-nope-{os.getpid()}"
    with pytest.raises(UsageError, match="no network namespace named"):
        select(discover(), [name])
    with pytest.raises(UsageError, match="no lab scenario named 'nothing-here' is up"):
        resolve_lab(["self", "lab:nothing-here"])
    with pytest.raises(UsageError, match="lab selectors are resolved by the command line"):
        select(discover(), ["lab:nothing-here"])
    assert not Path(f"/run/netns/{name}").exists()


def test_scans_survive_namespaces_and_links_churning(privileged: None) -> None:
    """Delete and create namespaces and links in the background while scanning."""
    stop = threading.Event()
    errors: list[BaseException] = []
    rounds = [0]

    def churn() -> None:
        try:
            while not stop.is_set():
                with sandbox.sandbox("tcatchurn") as churn_box:
                    host = churn_box.namespace("h")
                    for i in range(3):
                        pod = churn_box.namespace(f"p{i}")
                        churn_box.veth(host, f"v{i}", pod, "eth0")
                        churn_box.clsact(host, f"v{i}")
                        churn_box.attach(
                            host,
                            f"v{i}",
                            "ingress",
                            churn_box.load_returning(0, "churn"),
                            pref=1,
                            handle=1,
                        )
                        host.nl.delete_link(host.ifindex(f"v{i}")) if i == 1 else None
                rounds[0] += 1
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        scans = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            result = scan(Selection())
            assert result.namespaces  # at least our own
            scans += 1
        root = Path(__file__).resolve().parents[2]
        for _ in range(3):
            proc = subprocess.run(
                [sys.executable, "-m", "tcaudit", "scan", "--format", "json"],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(root)},
            )
            assert proc.returncode == 0, proc.stderr
            assert "Traceback" not in proc.stderr
            for line in proc.stderr.splitlines():
                assert line.startswith("tcaudit: warning: "), line
    finally:
        stop.set()
        worker.join(timeout=120)  # a loaded machine takes a while to unwind
    assert not errors, errors
    assert scans >= 5 and rounds[0] >= 3, (scans, rounds)
    assert sandbox.leftover_namespaces("tcatchurn") == []
