"""The documents the check reads: TCAUDIT_CHECK_DOCS names a directory a real tcaudit
run just wrote them into (tests/test_agent_check.py in the main suite does, on test
namespaces); else the copies kept in tests/fixtures/ from such a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def docs() -> Path:
    return Path(os.environ.get("TCAUDIT_CHECK_DOCS") or FIXTURES)


@pytest.fixture
def aggregator() -> object:
    """datadog_checks.base's aggregator stub, emptied for each test (datadog-checks-dev
    ships this fixture; the base package alone is all the check needs)."""
    from datadog_checks.base.stubs import aggregator as stub

    stub.reset()
    return stub
