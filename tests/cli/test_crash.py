"""An unexpected error: one line naming a private crash file with what a report needs and
nothing from the environment; a thread that cannot return home stops the process."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tcaudit.cli import main as cli_main
from tcaudit.cli.main import EXIT_CRASH, main

ROOT = Path(__file__).resolve().parents[2]
SECRET = "dd-api-key-0123456789abcdef"


def test_a_crash_writes_a_private_file_without_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crash_dir = tmp_path / "crashes"
    monkeypatch.setenv("TCAUDIT_CRASH_DIR", str(crash_dir))
    monkeypatch.setenv("DD_API_KEY", SECRET)
    monkeypatch.delenv("TCAUDIT_DEBUG", raising=False)

    def boom(*args: object, **kwargs: object) -> None:
        raise ValueError("the engine fell over")

    import tcaudit.advice.diff

    monkeypatch.setattr(tcaudit.advice.diff, "diff", boom)
    snap = tmp_path / "s.json"
    from tcaudit.output.json_format import dumps, scan_json
    from tests.output.test_golden import node

    snap.write_text(dumps(scan_json(node("n", 20))))
    code = main(["diff", str(snap), str(snap)])
    out, err = capsys.readouterr()
    assert code == EXIT_CRASH and out == ""
    [path] = crash_dir.glob("crash-*.txt")
    assert err == (
        "tcaudit: internal error: ValueError: the engine fell over "
        f"(the details are in {path}; please report it)\n"
    )
    text = path.read_text()
    assert text.startswith("tcaudit ") and f"command: tcaudit diff {snap} {snap}\n" in text
    assert "ValueError: the engine fell over" in text and "Traceback" in text
    assert SECRET not in text and "DD_API_KEY" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(crash_dir.stat().st_mode) == 0o700


def test_an_open_crash_directory_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crash_dir = tmp_path / "open"
    crash_dir.mkdir()
    crash_dir.chmod(0o777)
    monkeypatch.setenv("TCAUDIT_CRASH_DIR", str(crash_dir))
    monkeypatch.setattr(cli_main, "cli", lambda **kwargs: 1 / 0)
    assert main(["scan"]) == EXIT_CRASH
    assert "set TCAUDIT_DEBUG=1 for the traceback" in capsys.readouterr().err
    assert list(crash_dir.iterdir()) == []


@pytest.mark.usefixtures("privileged")
def test_failing_to_return_home_stops_the_process_at_once() -> None:
    code = """
import os
import tcaudit.kernel.nsfs as nsfs
real, calls = nsfs.setns, []
def setns(fd):
    calls.append(fd)
    if len(calls) == 2:
        raise OSError(1, "Operation not permitted")
    real(fd)
nsfs.setns = setns
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
try:
    with nsfs.inside_netns(fd):
        pass
finally:
    print("a finally block ran in the wrong namespace")
print("went on")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 70
    assert done.stdout == ""
    assert "cannot return to its own network namespace (Operation not permitted)" in done.stderr
