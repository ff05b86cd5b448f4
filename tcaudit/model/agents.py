"""The CWS configuration a running system-probe applies (inventory/cws_agents.py reads it;
docs/agent-config.md says where each value comes from)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CwsSetting:
    key: str  # "classifier_priority", "ingress.enabled", ... (under ...network.)
    value: int | bool
    source: str  # "file event_monitoring_config", "file runtime_security_config",
    # "env DD_EVENT_MONITORING_CONFIG_NETWORK_...", or "default"


@dataclass(frozen=True)
class CwsAgent:
    pid: int
    config_file: str | None  # as system-probe names it (inside its own root); None: none
    settings: tuple[CwsSetting, ...]
    problems: tuple[str, ...] = ()  # "path:line: not YAML", "not a regular file", ...

    def value(self, key: str) -> int | bool:
        return next(s.value for s in self.settings if s.key == key)

    def source(self, key: str) -> str:
        return next(s.source for s in self.settings if s.key == key)

    @property
    def network_enabled(self) -> bool:
        return bool(self.value("enabled"))

    @property
    def classifier_priority(self) -> int:
        return int(self.value("classifier_priority"))
