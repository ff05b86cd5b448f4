"""The pipeline every reading command shares: scan -> verdicts -> vendors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tcaudit.analysis.attach import VerdictAnalyser, add_verdicts
from tcaudit.inventory.observers import mark_observers, recorded_observers
from tcaudit.inventory.scan import Selection, scan
from tcaudit.model import Scan
from tcaudit.vendors.attribution import add_vendors
from tcaudit.vendors.registry import load_registry


def inventory(
    selection: Selection | None = None,
    *,
    vendor_files: Sequence[str | Path] = (),
    use_cache: bool = False,
) -> Scan:
    """Everything on the selected hooks, in execution order, with verdicts and vendors.

    ``use_cache``: reuse (and keep) verdict analyses in the persistent cache
    (``analysis.cache``); the CLI turns it on unless ``--no-cache`` is given.
    """
    registry = load_registry(vendor_files)  # first: a bad --vendors file fails before reading
    found = mark_observers(scan(selection or Selection()), recorded_observers())
    cache = None
    if use_cache:
        from tcaudit.analysis.cache import open_cache

        cache = open_cache()
    return add_vendors(add_verdicts(found, VerdictAnalyser(cache=cache)), registry)
