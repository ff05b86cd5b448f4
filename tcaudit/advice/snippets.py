"""The settings a recommendation hands over, ready to paste: system-probe.yaml, Helm
values and the system-probe container's environment, with where the running
system-probe takes the setting from when tcaudit could read that."""

from __future__ import annotations

from tcaudit.advice.agent_config import where_set
from tcaudit.model import CwsAgent
from tcaudit.vendors.cws import DEFAULT_PRIORITY


def located(pasted: dict[str, str], config: CwsAgent | None, action: str) -> dict[str, str]:
    """The snippets with where the running system-probe takes the setting from."""
    if config is None or action == "keep":
        return pasted
    key = "enabled" if action == "disable-network" else "classifier_priority"
    where = where_set(config, key)
    return {
        **pasted,
        "system_probe_yaml": f"# system-probe (pid {config.pid}) takes it from {where}\n"
        + pasted["system_probe_yaml"],
        "env": f"# system-probe (pid {config.pid}) takes it from {where}\n" + pasted["env"],
    }


def snippets(action: str, priority: int | None) -> dict[str, str]:
    """Ready-to-paste settings (both key prefixes: the older one is a deprecated alias)."""
    if action == "disable-network":
        return {
            "system_probe_yaml": (
                "event_monitoring_config:\n  network:\n    enabled: false\n"
                "# agents that predate event_monitoring_config read the older key:\n"
                "runtime_security_config:\n  network:\n    enabled: false\n"
            ),
            "helm_values": (
                "datadog:\n  securityAgent:\n    runtime:\n      network:\n        enabled: false\n"
            ),
            "env": (
                "DD_EVENT_MONITORING_CONFIG_NETWORK_ENABLED=false\n"
                "DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED=false\n"
            ),
        }
    value = priority if priority is not None else DEFAULT_PRIORITY
    return {
        "system_probe_yaml": (
            f"event_monitoring_config:\n  network:\n    classifier_priority: {value}\n"
            "# agents that predate event_monitoring_config read the older key:\n"
            f"runtime_security_config:\n  network:\n    classifier_priority: {value}\n"
        ),
        "helm_values": (
            "# the chart has no priority value: set it on the system-probe container\n"
            "agents:\n  containers:\n    systemProbe:\n      env:\n"
            "        - name: DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY\n"
            f'          value: "{value}"\n'
            "        - name: DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY\n"
            f'          value: "{value}"\n'
        ),
        "env": (
            f"DD_EVENT_MONITORING_CONFIG_NETWORK_CLASSIFIER_PRIORITY={value}\n"
            f"DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY={value}\n"
        ),
    }
