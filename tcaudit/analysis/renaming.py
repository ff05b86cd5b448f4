"""A family's shared answer given to one copy: the copy's map ids in place of the
representative's (``shapes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tcaudit.analysis.domain import Ptr, Value
from tcaudit.analysis.interp import Local


def has_map(v: Value) -> bool:
    """The value names a map (a map or map value pointer): it differs between copies."""
    return type(v) is Ptr and v[0] in ("map", "mapval")


def _remap_value(v: Value, mp: Mapping[int, int]) -> Value:
    if type(v) is Ptr and v.kind in ("map", "mapval") and v.map_id is not None:
        return Ptr(v.kind, mp.get(v.map_id, v.map_id), v.off)
    return v


def remap(loc: Local, mp: Mapping[int, int], maps: tuple[int, ...]) -> Local:
    """A family's answer for one copy: its map ids (``mp``: the representative's ->
    the copy's) where the representative's stood; ``maps``: the copy's map list."""
    if all(k == v for k, v in mp.items()):
        return loc
    sites = [
        replace(
            s,
            map_id=mp.get(s.map_id, s.map_id) if s.map_id is not None else None,
            candidates=maps if s.candidates else (),
            cb=tuple((o, z, _remap_value(v, mp)) for o, z, v in s.cb),
        )
        for s in loc.sites
    ]
    return Local(
        [_remap_value(v, mp) for v in loc.values],
        {pc: _remap_value(v, mp) for pc, v in loc.exits.items()},
        sites,
        loc.problem,
    )

