"""The layering is enforced: `lint-imports` (in `make lint`) passes on the tree and fails
on a copy with one import pointing the wrong way, including a TYPE_CHECKING one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp: Path) -> Path:
    tree = tmp / "tree"
    shutil.copytree(
        ROOT / "tcaudit", tree / "tcaudit", symlinks=True, ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(ROOT / "setup.cfg", tree / "setup.cfg")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "setup.cfg", "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a lower layer reaching up
        ("kernel/abi.py", "from tcaudit.cli import main as _m\n", "Data flows one way"),
        # hidden behind TYPE_CHECKING, still counted
        (
            "inventory/programs.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from tcaudit.lab import sandbox as _s\n",
            "The line never reaches",
        ),
        # output importing the live tools
        ("output/text.py", "import tcaudit.live.traffic as _t\n", "The line never reaches"),
        # the lab importing the CLI
        ("lab/demo.py", "import tcaudit.cli.main as _c\n", "runs the CLI in a subprocess"),
        # a cycle between two sibling modules of one layer
        ("kernel/abi.py", "import tcaudit.kernel.rtnl as _r\n", "No import cycle"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    tree = _copy(tmp_path)
    _append(tree / "tcaudit" / module, "\n" + line)
    done = _lint(tree)
    assert done.returncode != 0
    assert broken in done.stdout.replace("\n", " ")
