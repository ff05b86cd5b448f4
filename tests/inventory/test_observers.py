"""tcaudit's own observers are known by the probe's records, never by a name: a vendor
(or an attacker) naming its accepting pref-1 filter `tcaudit_probe_1_1` cannot make
`recommend` say keep while CWS is blind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tcaudit.cli.main import main
from tcaudit.inventory.observers import ObserverKey, recorded_observers
from tcaudit.kernel import bpf
from tcaudit.lab.sandbox import Namespace, Program, Sandbox


def _record(ns: Namespace, dev: str, prog: Program, *, tag: str | None = None) -> dict[str, Any]:
    info = bpf.prog_info(prog.fd)
    return {
        "netns_inode": os.stat(ns.path).st_ino,
        "netns_path": ns.path,
        "netns_label": ns.name,
        "interface": dev,
        "ifindex": ns.ifindex(dev),
        "hook": "clsact/ingress",
        "pref": 1,
        "handle": 1,
        "name": "tcaudit_probe_1_1",
        "prog_id": info.id,
        "tag": tag or info.tag,
    }


def _write_state(directory: Path, *records: dict[str, Any], mode: int = 0o600) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "4242-1.json"
    path.write_text(json.dumps({"pid": 4242, "started": 1, "observers": list(records)}))
    path.chmod(mode)
    return path


def _recommend(capsys: pytest.CaptureFixture[str], ns: Namespace) -> tuple[dict[str, Any], str]:
    code = main(["recommend", "--format", "json", "--netns", ns.name])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc, err


@pytest.fixture
def spoofed(box: Sandbox) -> tuple[Namespace, Program]:
    """pref 1: an accepting filter named like an observer; pref 10: a CWS stand-in."""
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "veth0", pod, "eth0")
    box.clsact(host, "veth0")
    ok = box.load_returning(0, "ok")
    box.attach(host, "veth0", "ingress", ok, pref=1, handle=1, name="tcaudit_probe_1_1")
    cws = box.load_returning(-1, "classifier_ingr")
    name = "classifier_ingress_security3_4026531992_2115"
    box.attach(host, "veth0", "ingress", cws, pref=10, handle=1, name=name)
    return host, ok


def test_a_filter_named_like_an_observer_still_blinds_cws(
    spoofed: tuple[Namespace, Program], capsys: pytest.CaptureFixture[str]
) -> None:
    host, _ = spoofed
    doc, _ = _recommend(capsys, host)
    assert doc["action"] == "disable-network"
    assert [b["pref"] for b in doc["blind"]] == [1]


def test_an_observer_the_probe_recorded_is_left_out(
    spoofed: tuple[Namespace, Program],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, ok = spoofed
    state = tmp_path / "state"
    _write_state(state, _record(host, "veth0", ok))
    monkeypatch.setenv("TCAUDIT_PROBE_STATE_DIR", str(state))
    doc, _ = _recommend(capsys, host)
    assert doc["action"] == "keep" and doc["blind"] == []


@pytest.mark.parametrize("how", ["wrong-tag", "dir-0777", "file-0666", "file-symlink", "uid"])
def test_records_that_cannot_be_trusted_are_ignored(
    spoofed: tuple[Namespace, Program],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    host, ok = spoofed
    state = tmp_path / "state"
    record = _record(host, "veth0", ok, tag="00" * 8 if how == "wrong-tag" else None)
    path = _write_state(state, record, mode=0o666 if how == "file-0666" else 0o600)
    if how == "dir-0777":
        state.chmod(0o777)
    if how == "file-symlink":
        real = tmp_path / "elsewhere.json"
        path.rename(real)
        path.symlink_to(real)
    if how == "uid":
        os.chown(path, 65534, 65534)
    monkeypatch.setenv("TCAUDIT_PROBE_STATE_DIR", str(state))
    doc, err = _recommend(capsys, host)
    assert doc["action"] == "disable-network"
    if how == "dir-0777":
        assert "probe state directory" in err and "its records are ignored" in err


def test_recorded_observers_reads_only_complete_records(tmp_path: Path) -> None:
    state = tmp_path / "state"
    good = {
        "netns_inode": 1, "ifindex": 2, "hook": "clsact/egress", "pref": 3, "handle": 4,
        "name": "tcaudit_probe_9_1", "prog_id": 5, "tag": "ab" * 8,
    }
    old = {k: v for k, v in good.items() if k not in ("prog_id", "tag")}  # older probes
    _write_state(state, good, old, {"netns_inode": "x"}, "junk")
    (state / "broken.json").write_text("{not json")
    (state / "huge.json").write_text(" " * (2 << 20))
    found = recorded_observers(state)
    assert found.keys == {ObserverKey(1, 2, "clsact/egress", 3, 4, 5, "ab" * 8)}
    assert found.warnings == ()
    assert recorded_observers(tmp_path / "missing").keys == frozenset()
