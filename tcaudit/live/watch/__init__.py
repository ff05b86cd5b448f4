"""`tcaudit watch`: record who changes the tc hooks, and catch vendors racing each other.

``loop`` holds the ``Watcher``, imported on first use.
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
