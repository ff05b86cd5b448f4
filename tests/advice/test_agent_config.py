"""The running system-probe's configuration in the recommendation: the priority it will
use, where to change it, a setting the hooks contradict, detections switched off, and
nothing else of the agent's environment or file in any output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcaudit.advice.recommend import recommend
from tcaudit.lab import sandbox
from tcaudit.model import CwsAgent, CwsSetting
from tcaudit.output.json_format import recommend_json
from tests.advice.test_recommend_rules import ACCEPT, bpf, cws, scan
from tests.conftest import validate

ROOT = Path(__file__).resolve().parents[2]
SECRET = "dd0123456789abcdef0123456789abcd"


def agent(pid: int = 42, priority: int = 10, source: str = "default", *,
          enabled: bool = True, enabled_source: str = "default") -> CwsAgent:
    settings = [
        CwsSetting("enabled", enabled, enabled_source),
        CwsSetting("classifier_priority", priority, source),
        CwsSetting("classifier_handle", 0, "default"),
        CwsSetting("raw_classifier_handle", 0, "default"),
        CwsSetting("ingress.enabled", True, "default"),
        CwsSetting("raw_packet.enabled", True, "default"),
    ]
    return CwsAgent(pid, "/etc/datadog-agent/system-probe.yaml", tuple(settings))


def test_a_priority_the_hooks_contradict_is_a_mismatch() -> None:
    env = "env DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY"
    rec = recommend(scan(("clsact/ingress", (cws(10),))), agents=(agent(priority=5, source=env),))
    assert rec.current_priority == 10 and rec.priority_source == "detected"
    [found] = [f for f in rec.findings if f.kind == "cws-config-mismatch"]
    assert found.level == "warning"
    assert "configured with classifier_priority 5 (env DD_EVENT_MONITORING" in found.message
    assert "sit at pref 10" in found.message
    doc = recommend_json(rec)
    validate(doc)
    assert doc["cws_config"]["classifier_priority"] == 5
    assert doc["cws_config"]["sources"]["classifier_priority"] == env


def test_without_cws_on_the_hooks_the_configured_priority_is_evaluated() -> None:
    rec = recommend(scan(("clsact/ingress", (bpf(5, "acceptor", ACCEPT),))),
                    agents=(agent(priority=7, source="file event_monitoring_config.network"
                                  ".classifier_priority"),))
    assert (rec.current_priority, rec.priority_source) == (7, "agent-config")
    assert rec.action == "set-priority" and rec.classifier_priority == 4
    assert any("event_monitoring_config.network.classifier_priority in "
               "/etc/datadog-agent/system-probe.yaml" in n for n in rec.notes)
    validate(recommend_json(rec))


def test_the_deprecated_file_key_is_named_where_to_change_it() -> None:
    old = "file runtime_security_config.network.classifier_priority"
    rec = recommend(scan(("clsact/ingress", (bpf(5, "acceptor", ACCEPT), cws(10)))),
                    agents=(agent(priority=10, source=old),))
    assert rec.action == "set-priority"
    [note] = [n for n in rec.notes if n.startswith("Change it where")]
    assert "runtime_security_config.network.classifier_priority in" in note
    assert "wins over every other setting" in note
    first = rec.snippets["system_probe_yaml"].splitlines()[0]
    assert first.startswith("# system-probe (pid 42) takes it from runtime_security_config")


def test_two_agents_have_no_single_configuration() -> None:
    rec = recommend(scan(("clsact/ingress", (cws(10),))), agents=(agent(1), agent(2)))
    assert rec.cws_config is None and len(rec.cws_agents) == 2
    assert [f.kind for f in rec.findings] == ["cws-agents"]
    doc = recommend_json(rec)
    validate(doc)
    assert doc["cws_config"] is None and [a["pid"] for a in doc["cws_agents"]] == [1, 2]


def test_network_detections_switched_off_are_their_own_finding() -> None:
    off = agent(enabled=False, enabled_source="env DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED")
    rec = recommend(scan(("clsact/ingress", (cws(10),))), agents=(off,))
    [found] = [f for f in rec.findings if f.kind == "cws-network-disabled"]
    assert "network detections disabled (env DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED)" in (
        found.message
    )


@pytest.mark.usefixtures("privileged")
def test_a_real_system_probe_is_read_and_its_secrets_never_leave(tmp_path: Path) -> None:
    """A process that is system-probe by comm and executable (a copy of bash), with an
    API key in its environment and its file: recommend and check show its settings and
    the key appears in no output, cache or crash file."""
    binary = tmp_path / "bin" / "system-probe"
    binary.parent.mkdir()
    shutil.copy("/bin/bash", binary)  # stays running (two commands), unlike sleep
    config = tmp_path / "etc" / "system-probe.yaml"
    config.parent.mkdir()
    config.write_text(
        f"api_key: {SECRET}\nevent_monitoring_config:\n  network:\n"
        "    classifier_priority: 6\n"
    )
    env = {"PATH": "/usr/bin", "DD_API_KEY": SECRET,
           "DD_RUNTIME_SECURITY_CONFIG_NETWORK_RAW_PACKET_ENABLED": "false"}
    probe = subprocess.Popen(
        [str(binary), "-c", "sleep 30; true", f"--config={config}"], env=env
    )
    try:
        time.sleep(0.2)
        outputs = []
        for args in (["recommend", "--format", "json"], ["recommend"],
                     ["check", "--format", "junit"], ["check", "--format", "markdown"]):
            done = subprocess.run(
                [sys.executable, "-m", "tcaudit", *args, "--netns", "self", "--dev", "lo"],
                cwd=ROOT, capture_output=True, text=True, check=False,
            )
            assert done.returncode in (0, 1), done.stderr
            outputs.append((done.stdout, done.stderr))
        bundle = tmp_path / "b.tgz"
        done = subprocess.run(
            [sys.executable, "-m", "tcaudit", "bundle", "-o", str(bundle), "--yes",
             "--netns", "self", "--dev", "lo"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(outputs[0][0])
    finally:
        probe.kill()
        probe.wait()
    validate(doc)
    [mine] = [a for a in doc["cws_agents"] if a["pid"] == probe.pid]
    assert mine["classifier_priority"] == 6 and mine["config_file"] == str(config)
    assert mine["raw_packet_enabled"] is False
    assert mine["sources"]["raw_packet.enabled"] == (
        "env DD_RUNTIME_SECURITY_CONFIG_NETWORK_RAW_PACKET_ENABLED"
    )
    assert f"system-probe pid {probe.pid}" in outputs[1][0]
    for out, err in outputs:
        assert SECRET not in out + err and "DD_API_KEY" not in out + err
    import tarfile

    with tarfile.open(bundle) as tar:
        members = [tar.extractfile(m) for m in tar.getmembers() if m.isfile()]
        texts = [m.read() for m in members if m is not None]
    assert any(b'"cws_agents"' in t for t in texts)
    assert not [t for t in texts if SECRET.encode() in t or b"DD_API_KEY" in t]
    for directory in (os.environ["TCAUDIT_CACHE_DIR"], os.environ["TCAUDIT_CRASH_DIR"]):
        for path in Path(directory).rglob("*") if Path(directory).exists() else []:
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_a_raw_packet_classifier_system_probe_holds_is_cws_own(
        box: sandbox.Sandbox, tmp_path: Path) -> None:
    """A real scan: CWS's main classifier (returns UNSPEC) and a raw-packet classifier
    that can accept, both at pref 10, the second held open by a process that is
    system-probe by comm and executable. The scan shows the holder's executable;
    recommend keeps priority 10, calls neither an impostor and warns what the accepting
    one means for what runs after it. Without that holder it is an impostor."""
    ns = box.namespace("h")
    peer = box.namespace("p")
    box.veth(ns, "v0", peer, "eth0")
    box.clsact(ns, "v0")
    main = box.load_returning(-1, "classifier_ingr")
    raw = box.load_returning(0, "classifier_raw_")
    box.attach(ns, "v0", "ingress", main, pref=10, handle=0xCA,
               name="classifier_ingress_security2_4026531992_2115")
    box.attach(ns, "v0", "ingress", raw, pref=10, handle=0xCB,
               name="classifier_raw_packet_ingress_security2_4026531992_2115")
    argv = [sys.executable, "-m", "tcaudit", "recommend", "--format", "json",
            "--netns", ns.name, "--dev", "v0"]

    def kinds() -> tuple[dict[str, object], list[str]]:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        validate(doc)
        return doc, [f["kind"] for f in doc["findings"]]

    doc, found = kinds()
    assert "cws-impostor" in found and doc["action"] != "keep"
    binary = tmp_path / "bin" / "system-probe"
    binary.parent.mkdir()
    shutil.copy("/bin/bash", binary)
    holder = subprocess.Popen([str(binary), "-c", "sleep 30; true"], pass_fds=(raw.fd,),
                              env={"PATH": "/usr/bin"})
    try:
        time.sleep(0.2)
        doc, found = kinds()
        done = subprocess.run([sys.executable, "-m", "tcaudit", "scan", "--format", "json",
                               "--netns", ns.name, "--dev", "v0"],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    finally:
        holder.kill()
        holder.wait()
    assert (doc["action"], doc["classifier_priority"]) == ("keep", 10)
    assert "cws-impostor" not in found and found.count("cws-ends-chain") == 1
    scanned = json.loads(done.stdout)
    validate(scanned)
    holders = [h for n in scanned["namespaces"] for i in n["interfaces"] for k in i["hooks"]
               for e in k["entries"] for h in (e["program"] or {}).get("holders", [])]
    assert {"pid": holder.pid, "comm": "system-probe", "exe": "system-probe"} in holders
