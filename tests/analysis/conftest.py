"""Fixtures of the analysis tests."""

from __future__ import annotations

import pytest

from tcaudit.analysis import interp
from tcaudit.analysis.frames import CbState
from tcaudit.analysis.prepare import Prepared

Runs = list[tuple[tuple[int, ...], CbState]]


@pytest.fixture()
def runs(monkeypatch: pytest.MonkeyPatch) -> Runs:
    """The maps and entry cb state of every program the engine analyses."""
    seen: Runs = []
    real = interp.ProgAnalyser.__init__

    def spy(self: interp.ProgAnalyser, prep: Prepared, env: interp.Env, cb: CbState,
            map_ids: tuple[int, ...]) -> None:
        seen.append((tuple(map_ids), cb))
        real(self, prep, env, cb, map_ids)

    monkeypatch.setattr(interp.ProgAnalyser, "__init__", spy)
    return seen
