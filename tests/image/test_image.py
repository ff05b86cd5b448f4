"""The image `make image` built, run the way the DaemonSets run it (privileged, hostPID,
hostNetwork, their volumes; tests/image/container.py): it sees the host's test
namespaces and answers exactly as tcaudit outside it does, its probe and selftest
work and leave nothing behind, and the DaemonSets' own commands do what the manifests
promise. The image has no compiler, no kernel headers and no bcc, and says so in one
line where a command needs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import validate
from tests.image.container import Container, mounts_under, wait_for
from tests.nodes import Node

# The only keys whose values may differ between two runs on an unchanged node: when
# the answer was made. Everything else (namespaces, names, program ids, verdicts,
# vendors, findings, snippets) must be identical inside and outside the image.
DIFFERS_BETWEEN_RUNS = {
    "scan": frozenset[str](),
    "recommend": frozenset({"generated_at"}),
}


def outside(*args: str) -> subprocess.CompletedProcess[str]:
    """tcaudit on the host, from the project's venv (the test's cache and state dirs)."""
    return subprocess.run(
        [sys.executable, "-m", "tcaudit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def document(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    doc: dict[str, Any] = json.loads(run.stdout)
    validate(doc)
    return doc


def one_clear_line(run: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert run.returncode == code, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcaudit: error: "), run.stderr
    assert says in lines[0] and "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("command", ["scan", "recommend"])
def test_inside_the_image_the_answer_is_exactly_the_one_outside(
    container: Container, image_node: Node, command: str
) -> None:
    args = (command, "--format", "json", *image_node.selectors())
    inside = document(container.run("tcaudit", *args))
    host = document(outside(*args))
    for key in DIFFERS_BETWEEN_RUNS[command]:
        assert inside.pop(key) and host.pop(key)
    assert inside == host
    # and it is an answer about the host's test namespaces, not an empty one
    if command == "scan":
        names = {n for ns in inside["namespaces"] for n in ns["names"]}
    else:
        names = {ns["netns"] for ns in inside["namespaces"]}
    assert names == {ns.name for ns in image_node.namespaces}
    if command == "recommend":
        assert inside["action"] == "disable-network"  # Cilium-like, pref 1, accepts
        assert inside["cws_detected"] and inside["current_priority"] == 10


def test_the_probe_in_the_image_counts_and_removes_its_observers(
    container: Container, image_node: Node
) -> None:
    scan = ("scan", "--format", "json", *image_node.selectors())
    before = document(outside(*scan))
    # --generate is allowed: the namespaces are recorded under the /run/tcaudit the
    # pod shares with the node
    run = container.run(
        "tcaudit", "probe", "--format", "json", "--duration", "1s", "--generate",
        *image_node.selectors(),
    )
    doc = document(run)
    assert doc["schema"] == "tcaudit/probe/v1"
    # with traffic generated, the observer just behind the Cilium-like filter counts
    # nothing of what the interface received: it ends the chain, as its bytecode says
    behind = [o for o in doc["observers"] if o["pref"] == 2]
    assert {o["interface"] for o in behind} == {"lxc0", "lxc1"}
    for observer in behind:
        assert observer["reference_packets"] >= 10 and observer["packets"] == 0, observer
    assert len(doc["conclusions"]) == 2
    for conclusion in doc["conclusions"]:
        assert conclusion["vendor"] == "Cilium" and conclusion["ends_chain_ratio"] == 1.0
        assert conclusion["agrees"] is True
    # every filter as it was (pref, handle, program, order), nothing of the probe left
    assert document(outside(*scan)) == before
    state = container.hostpath("/run/tcaudit") / "probe"
    assert not state.exists() or list(state.iterdir()) == []


def test_the_selftest_in_the_image_passes_where_it_may_make_namespaces(
    container: Container,
) -> None:
    # as a debug pod with the DaemonSet's volumes, the netns directories writable: it
    # makes its namespaces there (the image's /var/run is /run: both mounts land on it)
    container.make_writable("/run/netns", "/var/run/netns")
    run = container.run("tcaudit", "selftest")
    assert run.returncode == 0, (run.stdout, run.stderr)
    *steps, last = run.stdout.rstrip("\n").splitlines()
    assert last == "tcaudit self test: OK"
    assert len(steps) == 6 and all(line.startswith("  [ok] ") for line in steps), run.stdout
    assert "no compiler" in run.stdout  # the observer is bytecode
    [pair] = re.findall(r"namespaces: (\S+) <-> (\S+)", run.stdout)
    for name in pair:
        assert not os.path.lexists(f"/run/netns/{name}")
    made = container.hostpath("/run/tcaudit") / "made"
    assert list(made.iterdir()) == []  # recorded while they lived, forgotten after


def test_the_selftest_in_the_daemonset_pod_says_why_it_cannot_run(
    container: Container,
) -> None:
    # the DaemonSets mount /run/netns read-only (they only read): one step fails, the
    # line says why, the exit status is contracts.md's "a self-test step failed"
    run = container.run("tcaudit", "selftest")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr
    [failed] = [line for line in run.stdout.splitlines() if "[FAILED]" in line]
    assert failed.startswith("  [FAILED] namespaces: ")
    assert "Read-only file system" in failed and "/run/netns/" in failed
    assert run.stdout.strip().splitlines()[-1] == "tcaudit self test: FAILED at step 'namespaces'"
    assert "  [ok] cleanup: " in run.stdout


def test_what_the_image_lacks_it_says_in_one_line(container: Container) -> None:
    lacks = container.run(
        "/bin/sh", "-c",
        "command -v cc gcc clang llc; ls -d /usr/src/linux-headers-* /lib/modules/*/build; "
        "python3 -c 'import bcc'; /opt/tcaudit/bin/python -c 'import bcc'",
    )
    assert lacks.stdout == "", lacks.stdout  # no compiler, no headers
    assert lacks.stderr.count("No module named 'bcc'") == 2
    one_clear_line(container.run("tcaudit", "lab", "up", "cilium-1.9"), 3, "bcc")
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    one_clear_line(container.run(*nobody, "tcaudit", "selftest"), 3, "run it as root")
    one_clear_line(container.run("tcaudit", "scan", "--netns", "no-such-ns"), 2, "no-such-ns")


def fresh_cache(pod: Container) -> Path:
    """The node's cache directory as the kubelet makes a DirectoryOrCreate one: 0755."""
    cache = pod.hostpath("/var/cache/tcaudit")
    cache.chmod(0o755)
    return cache


def test_the_agent_check_daemonset_writes_the_status_file_and_keeps_the_cache(
    pod_on_node: Callable[[str], Container], image_node: Node
) -> None:
    pod = pod_on_node("tcaudit-agent-check.yaml")
    cache = fresh_cache(pod)
    proc = pod.start([*pod.spec["command"], *pod.spec["args"]])
    status = pod.hostpath("/var/lib/tcaudit") / "recommend.json"
    try:
        written = wait_for(status.exists, 600, proc)
        looping = proc.poll() is None  # the loop goes on: sleep 300, then again
    finally:
        code, out, err = pod.stop(proc)
    assert written and looping, (code, out, err)
    assert status.stat().st_mode & 0o777 == 0o644  # the Agent check reads it
    doc = json.loads(status.read_text())
    validate(doc)
    # the node's every namespace, the test's among them (host blind behind Cilium)
    seen = {ns["netns"]: ns for ns in doc["namespaces"]}
    assert {ns.name for ns in image_node.namespaces} <= set(seen)
    assert seen[image_node.host.name]["unfixable"] == 2
    assert doc["action"] == "disable-network"
    # the command closed the directory to 0700, so tcaudit used it
    assert cache.stat().st_mode & 0o777 == 0o700
    assert any(cache.rglob("*.json")), list(cache.rglob("*"))


def test_the_snapshot_daemonset_writes_its_file_and_becomes_ready(
    pod_on_node: Callable[[str], Container], image_node: Node
) -> None:
    pod = pod_on_node("tcaudit-snapshot.yaml")
    cache = fresh_cache(pod)
    proc = pod.start([*pod.spec["command"], *pod.spec["args"]])
    [out] = [v.host for v in pod.volumes if v.path == "/out"]
    try:
        done = wait_for((out / ".done").exists, 600, proc)
        sleeping = proc.poll() is None  # sleep infinity: kubectl cp collects the file
        probe = pod.spec["readinessProbe"]["exec"]["command"]
        ready = pod.run(*probe).returncode == 0
    finally:
        code, stdout, stderr = pod.stop(proc)
    assert done and sleeping and ready, (code, stdout, stderr)
    log = (out / "image-test-node.log").read_text()
    assert (out / ".done").read_text() == "ready\n", log
    assert "Traceback" not in log
    snapshot = json.loads((out / "image-test-node.json").read_text())
    validate(snapshot)
    names = {n for ns in snapshot["namespaces"] for n in ns["names"]}
    assert names >= {ns.name for ns in image_node.namespaces}
    assert cache.stat().st_mode & 0o777 == 0o700
    assert any(cache.rglob("*.json")), list(cache.rglob("*"))


def test_a_mount_that_reaches_the_host_is_removed_and_fails_the_test(
    container: Container,
) -> None:
    # what the finalizer does if the runner ever leaked a mount onto the host
    leak = container.scratch / "leak"
    leak.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tcaudit-leak", str(leak)], check=True)
    try:
        with pytest.raises(AssertionError, match="mounts left on the host"):
            container.assert_unmounted()
        assert mounts_under([container.scratch]) == []
    finally:
        subprocess.run(["umount", str(leak)], capture_output=True, check=False)
        leak.rmdir()
