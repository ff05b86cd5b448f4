"""Every running system-probe and the CWS network settings it applies.

A process is system-probe when ``/proc/PID/comm`` says so AND the basename of
``/proc/PID/exe`` is ``system-probe`` (comm alone can be set by anyone). Its
configuration: the ``--config``/``-c`` argument (a ``.yaml`` path is the file, anything
else a directory holding ``system-probe.yaml``), else
``/etc/datadog-agent/system-probe.yaml``, read through ``/proc/PID/root`` so a
containerised agent's own file is found; a regular file only, at most
``MAX_CONFIG_BYTES``, parsed with ``yaml.safe_load``. And its environment.

Which value wins is the agent's own rule (docs/agent-config.md): the deprecated
``runtime_security_config.network.X`` in the file, then
``DD_EVENT_MONITORING_CONFIG_NETWORK_X``, then ``DD_RUNTIME_SECURITY_CONFIG_NETWORK_X``,
then ``event_monitoring_config.network.X`` in the file, then the default.

Privacy: only those keys are kept. Every other variable of the environment and every
other value of the file is dropped as it is read; a YAML error is ``path:line``, never
the line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tcaudit.kernel.procfs import comm_of, exe_of
from tcaudit.model import CwsAgent, CwsSetting

DEFAULTS: Final[dict[str, int | bool]] = {
    "enabled": True,
    "classifier_priority": 10,
    "classifier_handle": 0,
    "raw_classifier_handle": 0,
    "ingress.enabled": True,
    "raw_packet.enabled": True,
}
NEW, OLD = "event_monitoring_config", "runtime_security_config"
DEFAULT_CONFIG: Final = "/etc/datadog-agent/system-probe.yaml"
MAX_CONFIG_BYTES: Final = 1 << 20
MAX_ENV_BYTES: Final = 1 << 20


def env_names(key: str) -> tuple[str, str]:
    """(new, old) environment variable names of a network key."""
    tail = "NETWORK_" + key.upper().replace(".", "_")
    return f"DD_EVENT_MONITORING_CONFIG_{tail}", f"DD_RUNTIME_SECURITY_CONFIG_{tail}"


WANTED_ENV: Final = frozenset(name for key in DEFAULTS for name in env_names(key))


def _read(path: str, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


SYSTEM_PROBE = "system-probe"


def is_system_probe(comm: str | None, exe: str | None) -> bool:
    """A process is system-probe when its comm AND its executable's basename say so (a
    comm alone can be set by anyone)."""
    return comm == SYSTEM_PROBE and exe == SYSTEM_PROBE


def system_probes(proc: str = "/proc") -> list[int]:
    """The pids of every running system-probe, by comm AND executable."""
    found = []
    for entry in os.listdir(proc):
        if entry.isdigit() and is_system_probe(comm_of(entry, proc), exe_of(entry, proc)):
            found.append(int(entry))
    return sorted(found)


def config_file(argv: list[str]) -> str:
    """The file system-probe reads, from its command line (docs/agent-config.md)."""
    path = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-c") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            path = arg[2:]
    if not path:
        return DEFAULT_CONFIG
    return path if path.endswith(".yaml") else str(Path(path) / "system-probe.yaml")


def _environment(raw: bytes | None) -> dict[str, str]:
    """Only the CWS network variables; the rest is never kept (an API key is there)."""
    kept = {}
    for item in (raw or b"").split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name.decode(errors="replace") in WANTED_ENV:
            kept[name.decode()] = value.decode(errors="replace")
    return kept


def _yaml(raw: bytes, shown_path: str) -> tuple[dict[str, Any], str | None]:
    """The two network sections of the file, or a problem as ``path:line``."""
    import yaml

    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{shown_path}:{mark.line + 1}" if mark is not None else shown_path
        return {}, f"{where}: not valid YAML"
    if not isinstance(doc, dict):
        return {}, None
    sections = {}
    for prefix in (NEW, OLD):
        section = doc.get(prefix)
        network = section.get("network") if isinstance(section, dict) else None
        if isinstance(network, dict):
            sections[prefix] = {key: _lookup(network, key) for key in DEFAULTS}
    return sections, None


def _lookup(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (bool, int, str)) else None


def _coerce(key: str, value: Any) -> int | bool | None:
    """The agent's casts: booleans from true/false/1/0, integers in any base."""
    if isinstance(DEFAULTS[key], bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return {"true": True, "1": True, "false": False, "0": False}.get(text)
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, int) else int(str(value).strip(), 0)
    except ValueError:
        return None


def settings(sections: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]
             ) -> tuple[CwsSetting, ...]:
    """Each key's value and where it came from, by the agent's precedence."""
    out = []
    for key, default in DEFAULTS.items():
        new_env, old_env = env_names(key)
        candidates = [
            (sections.get(OLD, {}).get(key), f"file {OLD}.network.{key}"),
            (env.get(new_env) or None, f"env {new_env}"),
            (env.get(old_env) or None, f"env {old_env}"),
            (sections.get(NEW, {}).get(key), f"file {NEW}.network.{key}"),
        ]
        chosen: tuple[int | bool, str] = (default, "default")
        for raw, source in candidates:
            if raw is not None and (value := _coerce(key, raw)) is not None:
                chosen = (value, source)
                break
        out.append(CwsSetting(key, chosen[0], chosen[1]))
    return tuple(out)


def read_agent(pid: int, proc: str = "/proc") -> CwsAgent:
    """One system-probe's settings in effect."""
    problems: list[str] = []
    cmdline = _read(f"{proc}/{pid}/cmdline", MAX_ENV_BYTES) or b""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    path = config_file(argv[1:])
    inside = path if path.startswith("/") else f"/{path}"
    raw = _read(f"{proc}/{pid}/root{inside}", MAX_CONFIG_BYTES)
    sections: dict[str, Any] = {}
    if raw is None:
        if os.path.lexists(f"{proc}/{pid}/root{inside}"):
            problems.append(f"{path}: not a regular file of at most 1 MiB, not read")
        found: str | None = None
    else:
        found = path
        sections, problem = _yaml(raw, path)
        if problem:
            problems.append(problem)
    env = _environment(_read(f"{proc}/{pid}/environ", MAX_ENV_BYTES))
    return CwsAgent(pid, found, settings(sections, env), tuple(problems))


def running_agents(proc: str = "/proc") -> tuple[CwsAgent, ...]:
    """Every system-probe's settings, in pid order."""
    return tuple(read_agent(pid, proc) for pid in system_probes(proc))
