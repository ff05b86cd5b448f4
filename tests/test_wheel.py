"""The wheel carries everything tcaudit needs at run time, and nothing that is not ours.

Built from a copy of the tracked files (so the checkout gets no build/ or egg-info
litter), the way `pip install .` builds it: package data that is left out only shows on
a node, when the probe cannot find its C source or the scan its registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def _build(tmp: Path) -> dict[str, bytes]:
    tree = tmp / "src"
    for name in _tracked():
        source = ROOT / name
        if source.is_symlink() or source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                (tree / name).symlink_to(source.readlink())
            else:
                shutil.copy2(source, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(tmp / "dist"), str(tree)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("tcaudit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_wheel_holds_the_code_the_c_sources_the_schemas_and_the_registry(
    tmp_path: Path,
) -> None:
    files = _build(tmp_path)
    names = set(files)
    tracked = _tracked()
    expected = {n for n in tracked if n.startswith("tcaudit/") and n.endswith(".py")}
    expected |= {
        n.replace("bpf/", "tcaudit/bpf/", 1)
        for n in tracked
        if n.startswith("bpf/") and n.endswith((".c", ".h", ".py"))
    }
    expected |= {n for n in tracked if n.startswith("tcaudit/output/schemas/")}
    expected |= {"tcaudit/vendors/vendors.json", "tcaudit/py.typed"}
    assert expected - names == set()
    assert "tcaudit/bpf/verdict_probe.c" in names and "tcaudit/bpf/lab/count.c" in names
    ours = {n for n in names if ".dist-info/" not in n}
    # no top-level bpf package, no tests, nothing beside tcaudit/
    assert {n.split("/")[0] for n in ours} == {"tcaudit"}
    assert not {n for n in ours if "/tests/" in n or n.endswith((".o", ".pyc"))}
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tcaudit = tcaudit.cli.main:main" in files[entry_points].decode()
