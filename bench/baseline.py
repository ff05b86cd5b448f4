"""The baseline tree the benchmarks run beside the current one (``make bench``).

``bench/BASELINE`` names the commit whose code the issue-12 figures are measured
against (the engine before that issue's work). ``run.py`` checks it out once into a
temporary detached worktree and hands its path to each benchmark in
``TCAUDIT_BENCH_BASELINE``; a benchmark that supports it times the baseline's code on
the same fixture in the same run and prints both. Without git or the commit (a shallow
clone), the benchmarks run alone and say so.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = "TCAUDIT_BENCH_BASELINE"


def commit() -> str:
    for line in (HERE / "BASELINE").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise SystemExit("bench/BASELINE names no commit")


def tree() -> Path | None:
    """The baseline checkout handed to this benchmark, if any."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


@contextmanager
def checkout() -> Iterator[Path | None]:
    """A detached worktree of the baseline commit, removed afterwards."""
    ref = commit()
    top = HERE.parent
    tmp = Path(tempfile.mkdtemp(prefix="tcaudit-baseline-"))
    dest = tmp / "tree"
    made = subprocess.run(["git", "-C", str(top), "worktree", "add", "--detach", "-q",
                           str(dest), ref], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if made.returncode != 0:
        print(f"baseline {ref[:12]} not available ({made.stderr.strip()}): "
              "benchmarks run without it")
        tmp.rmdir()
        yield None
        return
    try:
        yield dest
    finally:
        subprocess.run(["git", "-C", str(top), "worktree", "remove", "--force", str(dest)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", str(tmp)])
