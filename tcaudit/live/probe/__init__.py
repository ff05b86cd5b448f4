"""`tcaudit probe`: put observers into live tc chains and count what reaches them.

The code lives in tcaudit/live/probe/attach.py for now; this package re-exports the
names callers use (``probe.plan``, ``probe.run``, ``probe.cleanup``, ...).
"""

from tcaudit.live.probe.attach import HANDLE_BASE, Tick, plan, run
from tcaudit.live.probe.naming import PROBE_PREFIX
from tcaudit.live.probe.state import STATE_DIR, ProbeError, StateFile, cleanup, state_dir

__all__ = [
    "HANDLE_BASE",
    "PROBE_PREFIX",
    "STATE_DIR",
    "ProbeError",
    "StateFile",
    "Tick",
    "cleanup",
    "plan",
    "run",
    "state_dir",
]
