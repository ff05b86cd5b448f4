"""What the running system-probe's configuration adds to the recommendation.

The hooks show what CWS runs at now; the agent's configuration (inventory/cws_agents.py,
docs/agent-config.md) shows what it will run at after its next start, and whether its
network detections are on at all. Their disagreement is worth saying: a setting changed
without a restart, or a second agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcaudit.model import CwsAgent


@dataclass(frozen=True)
class AgentNote:
    """A finding the configuration gives (the recommendation turns it into a Finding)."""

    kind: str  # cws-agents | cws-config-mismatch | cws-network-disabled | cws-config-unreadable
    message: str


def in_effect(agents: tuple[CwsAgent, ...]) -> CwsAgent | None:
    """The configuration in effect: the one system-probe's, when exactly one runs."""
    return agents[0] if len(agents) == 1 else None


def where_set(agent: CwsAgent, key: str) -> str:
    """Where to change ``key`` so that it takes effect: the source that won."""
    source = agent.source(key)
    if source.startswith("env "):
        return f"the environment variable {source[4:]} of system-probe (pid {agent.pid})"
    path = agent.config_file or "/etc/datadog-agent/system-probe.yaml"
    if source.startswith("file runtime_security_config"):
        return (
            f"runtime_security_config.network.{key} in {path} (the deprecated key: it wins "
            "over every other setting, so change it or remove it)"
        )
    if source.startswith("file "):
        return f"event_monitoring_config.network.{key} in {path}"
    return f"{path} (not set there: the default applies)"


def agent_notes(agents: tuple[CwsAgent, ...], detected: int | None) -> tuple[AgentNote, ...]:
    """The configuration's findings, given the pref CWS's filters sit at on the hooks."""
    notes = []
    if len(agents) > 1:
        pids = ", ".join(str(a.pid) for a in agents)
        notes.append(
            AgentNote(
                "cws-agents",
                f"{len(agents)} system-probe processes run (pids {pids}): no single "
                "configuration is in effect; each one's is listed",
            )
        )
    for agent in agents:
        notes += [
            AgentNote(
                "cws-config-unreadable", f"system-probe (pid {agent.pid}): {problem}"
            )
            for problem in agent.problems
        ]
        if not agent.network_enabled:
            notes.append(
                AgentNote(
                    "cws-network-disabled",
                    f"system-probe (pid {agent.pid}) has CWS network detections disabled "
                    f"({agent.source('enabled')}): it watches no traffic at any priority",
                )
            )
        elif detected is not None and agent.classifier_priority != detected:
            notes.append(
                AgentNote(
                    "cws-config-mismatch",
                    f"system-probe (pid {agent.pid}) is configured with classifier_priority "
                    f"{agent.classifier_priority} ({agent.source('classifier_priority')}) "
                    f"but CWS's filters sit at pref {detected}: not restarted since the "
                    "change, or another agent attached them",
                )
            )
    return tuple(notes)
