"""The Datadog Agent check on documents tcaudit writes right now on test namespaces
(keep, set-priority, disable-network), run in the check's own venv (`make setup`
builds it), the way the Agent would load the installed wheel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.agentdocs import write_documents

ROOT = Path(__file__).resolve().parent.parent
AGENT_PYTHON = ROOT / ".venv-agent" / "bin" / "python"


@pytest.mark.usefixtures("privileged")
def test_the_agent_check_reads_what_tcaudit_writes(tmp_path: Path) -> None:
    if not AGENT_PYTHON.exists():
        message = "the Agent check's venv is missing: run `make setup`"
        if os.environ.get("TCAUDIT_REQUIRE_PRIVILEGED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    write_documents(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "disable-network.json", "keep.json", "set-priority.json"
    ]
    done = subprocess.run(
        [str(AGENT_PYTHON), "-m", "pytest", "-q", "-p", "no:ddtrace", "-p",
         "no:cacheprovider", "tests"],
        cwd=ROOT / "integrations" / "tcaudit",
        env={**os.environ, "TCAUDIT_CHECK_DOCS": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout
