"""Shared fixtures. Tests marked ``privileged`` need root, tc/BPF and namespaces.

With TCAUDIT_REQUIRE_PRIVILEGED=1 (set by `make test`, hence in CI) a privileged test
that cannot run FAILS instead of being skipped, so CI never goes green by skipping the
tests that matter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tcaudit.bpf import source_path
from tcaudit.lab import sandbox

SCHEMAS = Path(__file__).resolve().parent.parent / "tcaudit" / "output" / "schemas"


def _privileged_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespaces"
    try:
        with sandbox.sandbox("tcatprobe") as box:
            box.load_returning(-1)
    except OSError as err:
        return f"cannot load BPF programs or create namespaces: {err}"
    return None


_PROBLEM: list[str | None] = []


def require_privileged() -> None:
    """Skip (or, under TCAUDIT_REQUIRE_PRIVILEGED=1, fail) when root/kernel are missing."""
    if not _PROBLEM:
        _PROBLEM.append(_privileged_problem())
    problem = _PROBLEM[0]
    if problem:
        if os.environ.get("TCAUDIT_REQUIRE_PRIVILEGED") == "1":
            pytest.fail(f"privileged test cannot run here ({problem}) but is required")
        pytest.skip(problem)


@pytest.fixture
def privileged() -> None:
    require_privileged()


@pytest.fixture
def box(privileged: None) -> Iterator[sandbox.Sandbox]:
    """A sandbox removed in the finalizer, even when the test fails; checks for leftovers."""
    made = sandbox.Sandbox()
    try:
        yield made
    finally:
        made.close()
        assert sandbox.leftover_namespaces(made.tag) == []


@pytest.fixture(scope="session")
def count_c() -> Path:
    return source_path("lab/count.c")


def validate(doc: dict[str, Any]) -> None:
    """Every JSON document a test produces must match the shipped schema for it."""
    name = doc["schema"].split("/")[1]
    schema = json.loads((SCHEMAS / f"{name}-v1.json").read_text())
    jsonschema.validate(doc, schema)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's verdict cache is a private directory (never /var/cache/tcaudit)."""
    directory = tmp_path_factory.mktemp("cache") / "tcaudit"
    monkeypatch.setenv("TCAUDIT_CACHE_DIR", str(directory))
    # and its own probe state directory (0700, as pytest makes them): no test reads or
    # writes the node's /run/tcaudit/probe
    monkeypatch.setenv("TCAUDIT_PROBE_STATE_DIR", str(tmp_path_factory.mktemp("probe")))
    monkeypatch.setenv("TCAUDIT_CRASH_DIR", str(tmp_path_factory.mktemp("crash") / "tcaudit"))
    monkeypatch.setenv("TCAUDIT_MADE_DIR", str(tmp_path_factory.mktemp("made") / "tcaudit"))


@pytest.fixture(autouse=True)
def _no_terminal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Human output is laid out by COLUMNS and NO_COLOR (output/layout.py): a test sees
    none of the developer's, so golden files hold what a pipe gets (120 columns)."""
    for name in ("COLUMNS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
