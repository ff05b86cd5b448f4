"""The name every observer carries, and what marks an entry as one of ours.

The name is for people reading `tc filter show`; tcaudit itself never trusts it: an entry
is one of its observers only when the probe's state records say so (program id and tag,
inventory/observers.py), and clean-up deletes only what a record names.
"""

from __future__ import annotations

from tcaudit.model import Entry

PROBE_PREFIX = "tcaudit_probe"


def is_ours(entry: Entry) -> bool:
    """A filter some tcaudit probe added (running, or killed before it could remove it),
    as the probe's records show."""
    return entry.observer

