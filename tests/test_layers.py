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


def _modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_help_imports_no_core_module() -> None:
    """`tcaudit scan --help` loads the CLI's option code and nothing of the line below it."""
    loaded = _modules_after(
        "from tcaudit.cli.main import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['scan', '--help'])"
    )
    ours = {m for m in loaded if m.startswith("tcaudit")}
    assert "tcaudit.cli.reading" in ours
    heavy = {"bcc", "tabulate", "jsonschema", "pyroute2", "yaml"}
    assert not heavy & loaded
    below = ("tcaudit.inventory.", "tcaudit.analysis.", "tcaudit.kernel.bpf", "tcaudit.live.")
    assert not {m for m in ours if m.startswith(below)}
    assert "tcaudit.cli.live" not in ours and "tcaudit.cli.lab" not in ours


@pytest.mark.parametrize(
    "package",
    ["tcaudit", "tcaudit.kernel", "tcaudit.inventory", "tcaudit.analysis", "tcaudit.vendors",
     "tcaudit.advice", "tcaudit.output", "tcaudit.cli", "tcaudit.live", "tcaudit.live.probe",
     "tcaudit.live.watch", "tcaudit.lab"],
)
def test_package_inits_import_nothing_heavy(package: str) -> None:
    before = _modules_after("")
    loaded = _modules_after(f"import {package}")
    new = {m for m in loaded - before if m.startswith("tcaudit")}
    # a package brings itself and its parents; the probe's re-exports are its own modules
    allowed = {package, *(package.rsplit(".", n)[0] for n in range(1, package.count(".") + 1))}
    extra = {m for m in new - allowed if not m.startswith(package + ".")}
    assert extra == set(), extra
    assert not {"bcc", "tabulate", "jsonschema", "pyroute2"} & (loaded - before)
