"""`tcaudit watch`: record who changes the tc hooks, and catch vendors racing each other.

``loop`` (the ``Watcher``: namespaces, sockets, TCX polling, rescans), ``events`` (the
model of each namespace's hooks and the event records), ``races`` (the findings' rules,
pure functions of that model), ``actors`` (the process behind a change). ``Watcher`` is
imported on first use, so the pure modules load without the kernel gateways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcaudit.live.watch.loop import Watcher

__all__ = ["Watcher"]


def __getattr__(name: str) -> Any:
    if name == "Watcher":
        from tcaudit.live.watch.loop import Watcher

        return Watcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
