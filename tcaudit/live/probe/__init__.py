"""`tcaudit probe`: put observers into live tc chains and count what reaches them.

Static analysis says what a classifier CAN return; observers show what actually gets
past it. An observer is bpf/verdict_probe.c attached as a cls_bpf filter that always
returns TC_ACT_UNSPEC (it never changes a packet's fate) and counts packets per slot.

Rules for changing a live chain (contracts.md, "Changing a live hook"):
- create-only (NLM_F_EXCL), never replace; delete only what we added;
- a free pref only, unless --share-pref (then also a pref whose filters are all bpf with
  protocol all: ours is added last, so it runs FIRST there, but it joins that vendor's
  classifier instance and the vendor cannot re-create the pref with another kind or
  protocol while the probe runs); never pref 0; never a hook without a clsact qdisc on
  a node (lab and selftest namespaces may create clsact);
- every observer is named tcaudit_probe_<pid>_<slot> and recorded in a state file BEFORE
  it is added, so `tcaudit probe --cleanup` removes exactly those after a crash or SIGKILL;
- removed in every exit path: normal end, exception, Ctrl-C, SIGTERM (the CLI turns
  SIGTERM into the same unwinding as Ctrl-C).

Modules: ``placements`` (where observers go: ``plan``), ``state`` (the state file and
``cleanup``), ``attach`` (observers in and out, and ``run``), ``conclusions`` (counts
turned into conclusions, pure), ``naming`` (what marks an observer as ours).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcaudit.inventory.observers import STATE_DIR, state_dir
    from tcaudit.live.probe.attach import HANDLE_BASE, Tick, nothing_to_observe, run
    from tcaudit.live.probe.naming import PROBE_PREFIX
    from tcaudit.live.probe.placements import plan
    from tcaudit.live.probe.state import ProbeError, StateFile, cleanup

# each name from the module that defines it, imported on first use: `import
# tcaudit.live.probe` (or one pure submodule) does not pull in the kernel gateways
_FROM = {
    "HANDLE_BASE": "attach",
    "Tick": "attach",
    "nothing_to_observe": "attach",
    "run": "attach",
    "PROBE_PREFIX": "naming",
    "plan": "placements",
    "STATE_DIR": "tcaudit.inventory.observers",
    "ProbeError": "state",
    "StateFile": "state",
    "cleanup": "state",
    "state_dir": "tcaudit.inventory.observers",
}

__all__ = [
    "HANDLE_BASE",
    "PROBE_PREFIX",
    "STATE_DIR",
    "ProbeError",
    "StateFile",
    "Tick",
    "cleanup",
    "nothing_to_observe",
    "plan",
    "run",
    "state_dir",
]


def __getattr__(name: str) -> Any:
    if name in _FROM:
        module = _FROM[name]
        if "." not in module:
            module = f"tcaudit.live.probe.{module}"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
