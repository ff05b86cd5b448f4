"""The CWS settings a running system-probe applies, read from a fake /proc (no root):
which process counts, which file, which value wins (the agent's own rule,
docs/agent-config.md), and that nothing else from its environment or file is kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcaudit.inventory.cws_agents import (
    config_file,
    read_agent,
    running_agents,
    system_probes,
)

SECRET = "0123456789abcdef-dd-api-key"


def fake_probe(
    proc: Path,
    pid: int,
    *,
    comm: str = "system-probe",
    exe: str = "/opt/datadog-agent/embedded/bin/system-probe",
    argv: tuple[str, ...] = ("system-probe", "run"),
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    d = proc / str(pid)
    (d / "root").mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    os.symlink(exe, d / "exe")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    environ = {"DD_API_KEY": SECRET, "PATH": "/usr/bin", **(env or {})}
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in environ.items()))
    for path, text in (files or {}).items():
        target = d / "root" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return d


FILE_BOTH = f"""
api_key: {SECRET}
event_monitoring_config:
  network:
    classifier_priority: 5
    ingress:
      enabled: false
runtime_security_config:
  network:
    classifier_priority: 3
"""


def test_only_a_process_named_and_built_as_system_probe_counts(tmp_path: Path) -> None:
    fake_probe(tmp_path, 10)
    fake_probe(tmp_path, 11, exe="/usr/bin/python3")  # comm can be set by anyone
    fake_probe(tmp_path, 12, comm="agent")
    assert system_probes(str(tmp_path)) == [10]


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        ((), "/etc/datadog-agent/system-probe.yaml"),
        (("run", "--config=/etc/dd/sp.yaml"), "/etc/dd/sp.yaml"),
        (("run", "-c", "/etc/dd"), "/etc/dd/system-probe.yaml"),
        (("--config", "/conf.d/"), "/conf.d/system-probe.yaml"),
    ],
)
def test_the_config_file_from_the_command_line(argv: tuple[str, ...], path: str) -> None:
    assert config_file(list(argv)) == path


def _values(agent: object) -> dict[str, tuple[object, str]]:
    return {s.key: (s.value, s.source) for s in agent.settings}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("file", "env", "priority", "source"),
    [
        # the deprecated key in the file is read first and beats everything
        (FILE_BOTH, {"DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY": "7"}, 3,
         "file runtime_security_config.network.classifier_priority"),
        # without it: the new env name, then the old env name, then the new file key
        ("event_monitoring_config: {network: {classifier_priority: 5}}",
         {"DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY": "7",
          "DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY": "8"}, 7,
         "env DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY"),
        ("event_monitoring_config: {network: {classifier_priority: 5}}",
         {"DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY": "8"}, 8,
         "env DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY"),
        ("event_monitoring_config: {network: {classifier_priority: 5}}", {}, 5,
         "file event_monitoring_config.network.classifier_priority"),
        ("", {"DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY": ""}, 10, "default"),
    ],
)
def test_which_value_wins_is_the_agents_rule(
    tmp_path: Path, file: str, env: dict[str, str], priority: int, source: str
) -> None:
    fake_probe(tmp_path, 20, env=env, files={"/etc/datadog-agent/system-probe.yaml": file})
    agent = read_agent(20, str(tmp_path))
    assert agent.config_file == "/etc/datadog-agent/system-probe.yaml"
    assert _values(agent)["classifier_priority"] == (priority, source)
    assert agent.classifier_priority == priority


def test_booleans_handles_and_defaults(tmp_path: Path) -> None:
    fake_probe(
        tmp_path, 21, argv=("system-probe", "run", "-c", "/opt/conf"),
        env={"DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED": "false",
             "DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_HANDLE": "0x10"},
        files={"/opt/conf/system-probe.yaml": FILE_BOTH},
    )
    agent = read_agent(21, str(tmp_path))
    values = _values(agent)
    assert agent.network_enabled is False
    assert values["enabled"] == (False, "env DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED")
    handle_env = "DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_HANDLE"
    assert values["classifier_handle"] == (16, f"env {handle_env}")
    ingress = "file event_monitoring_config.network.ingress.enabled"
    assert values["ingress.enabled"] == (False, ingress)
    assert values["raw_packet.enabled"] == (True, "default")


def test_nothing_but_the_network_keys_is_kept(tmp_path: Path) -> None:
    fake_probe(tmp_path, 22, files={"/etc/datadog-agent/system-probe.yaml": FILE_BOTH})
    agents = running_agents(str(tmp_path))
    assert len(agents) == 1
    assert SECRET not in repr(agents) and "DD_API_KEY" not in repr(agents)
    assert "PATH" not in repr(agents) and "api_key" not in repr(agents)


def test_a_yaml_error_is_path_and_line_never_the_line(tmp_path: Path) -> None:
    broken = f"event_monitoring_config:\n  network: [\napi_key: {SECRET}\n"
    fake_probe(tmp_path, 23, files={"/etc/datadog-agent/system-probe.yaml": broken})
    agent = read_agent(23, str(tmp_path))
    assert agent.problems and agent.problems[0].startswith(
        "/etc/datadog-agent/system-probe.yaml:"
    )
    assert SECRET not in repr(agent)
    assert agent.classifier_priority == 10  # defaults, as the agent would fail over


def test_a_missing_or_odd_file_gives_the_defaults(tmp_path: Path) -> None:
    d = fake_probe(tmp_path, 24)
    assert read_agent(24, str(tmp_path)).config_file is None  # no file: defaults
    target = d / "root" / "etc" / "datadog-agent"
    target.mkdir(parents=True)
    os.mkfifo(target / "system-probe.yaml")  # never opened blocking, never read
    agent = read_agent(24, str(tmp_path))
    assert agent.config_file is None and "not a regular file" in agent.problems[0]
