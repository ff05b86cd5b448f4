"""Every lab scenario end to end: up -> the expected recommendation -> down, clean."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tcaudit.cli.main import main
from tcaudit.cli.options import resolve_lab
from tcaudit.lab import scenarios as lab
from tcaudit.live.watch import Watcher
from tcaudit.model import WatchEvent, WatchFinding
from tcaudit.vendors.registry import load_registry
from tests.conftest import validate

pytestmark = pytest.mark.usefixtures("privileged")


@pytest.fixture
def lab_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCAUDIT_LAB_STATE_DIR", str(tmp_path))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def lab_processes(name: str) -> list[int]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if f"tcalab-{name}-".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("scenario", [s.name for s in lab.SCENARIOS])
def test_scenario_up_recommend_down(
    scenario: str, lab_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = lab.scenario(scenario)
    code, out = run(capsys, "lab", "up", scenario)
    try:
        assert code == 0, out
        assert f"{scenario} is up" in out
        code, out = run(capsys, "recommend", "--format", "json", "--netns", f"lab:{scenario}")
        assert code == 0
        doc: dict[str, Any] = json.loads(out)
        validate(doc)
        assert (doc["action"], doc["classifier_priority"]) == (
            expected.expected_action,
            expected.expected_priority,
        ), doc["summary"]
        assert doc["priority_source"] == "detected"  # the CWS stand-in is recognised
        code, status = run(capsys, "lab", "status")
        assert scenario in status
    finally:
        code, out = run(capsys, "lab", "down", scenario)
    assert code == 0 and f"{scenario}: removed" in out
    assert lab.check_clean(scenario) == []
    assert lab_processes(scenario) == []


def test_lab_traffic_reaches_the_probe(lab_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "lab", "up", "vendor-pref-5")[0] == 0
    try:
        code, out = run(capsys, "lab", "traffic", "vendor-pref-5", "--rounds", "2")
        assert code == 0 and int(out.split()[1]) >= 20
        code, out = run(
            capsys,
            "probe",
            "--netns",
            "lab:vendor-pref-5",
            "--generate",
            "--duration",
            "0.6s",
            "--format",
            "json",
        )
        assert code == 0
        [conclusion, *_] = json.loads(out)["conclusions"]
        assert conclusion["ends_chain_ratio"] == 1.0  # the vendor at pref 5 accepts all
    finally:
        run(capsys, "lab", "down", "vendor-pref-5")
    assert lab.check_clean("vendor-pref-5") == []


def test_the_race_scenario_feeds_watch(lab_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "lab", "up", "cilium-1.9-race")[0] == 0
    seen: list[WatchEvent | WatchFinding] = []
    watcher = Watcher(resolve_lab(["lab:cilium-1.9-race"]), load_registry(), seen.append)
    try:
        watcher.start()
        import threading

        runner = threading.Thread(target=lab.trigger, args=("cilium-1.9-race",))
        runner.start()
        deadline = time.monotonic() + 30
        while runner.is_alive() and time.monotonic() < deadline:
            watcher.step(0.05)
        watcher.step(0.1)
        runner.join()
    finally:
        watcher.finish()
        run(capsys, "lab", "down", "cilium-1.9-race")
    kinds = {f.kind for f in seen if isinstance(f, WatchFinding)}
    assert {"vendor-replaced", "deleted-by-other"} <= kinds
    actors = {e.actor.comm for e in seen if isinstance(e, WatchEvent) and e.actor}
    assert {"system-probe", "cilium-agent"} <= actors
    assert lab.check_clean("cilium-1.9-race") == []


def test_unknown_scenario_and_double_up_are_usage_errors(
    lab_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "up", "no-such-scenario"]) == 2
    assert main(["lab", "down", "calico"]) == 2
    assert main(["recommend", "--netns", "lab:calico"]) == 2
    assert run(capsys, "lab", "up", "calico")[0] == 0
    try:
        assert main(["lab", "up", "calico"]) == 2
    finally:
        run(capsys, "lab", "down", "--all")
    assert lab.check_clean("calico") == []


def test_a_crash_half_way_through_up_leaves_nothing(
    lab_state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    def explode(build: lab.Build) -> None:
        build.cilium_tree()  # a pin and programs exist by now
        raise RuntimeError("the vendor stand-in crashed")

    broken = dataclasses.replace(lab.scenario("cilium-1.9"), build=explode)
    monkeypatch.setattr(lab, "SCENARIOS", (broken,))
    with pytest.raises(RuntimeError, match="stand-in crashed"):
        lab.up("cilium-1.9")
    assert lab.check_clean("cilium-1.9") == []
    assert lab.read_state("cilium-1.9") is None


def test_up_refuses_namespaces_it_did_not_make(
    lab_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tcaudit.kernel import nsfs

    nsfs.create_named_netns("tcalab-calico-host")
    try:
        assert main(["lab", "up", "calico"]) == 2
        assert "exists already" in capsys.readouterr().err
        assert Path("/run/netns/tcalab-calico-host").exists()  # untouched
    finally:
        nsfs.delete_named_netns("tcalab-calico-host")
    assert lab.check_clean("calico") == []
