"""What marks an observer as tcaudit's: the name every observer carries."""

from __future__ import annotations

from tcaudit.model import Entry

PROBE_PREFIX = "tcaudit_probe"


def is_ours(entry: Entry) -> bool:
    """A filter some tcaudit probe added (running, or killed before it could remove it)."""
    return bool(entry.filter_name and entry.filter_name.startswith(PROBE_PREFIX))

