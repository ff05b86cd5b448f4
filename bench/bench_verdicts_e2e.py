"""End to end, program ids -> verdicts, next to what a person does today.

The tree is bpf/lab/cilium_like.c: a root that tail-calls through a prog array into
three programs (over 2,000 xlated instructions in all), loaded by bcc. Measured in one
run, each repeated:
  - tcaudit: from the root's program id to its verdicts, reading included (xlated code,
    func_info, map ids, prog-array slots, helper names from /proc/kallsyms), with fresh
    caches every time ("cold": a new process would do exactly this);
  - today: `bpftool prog dump xlated id N` for each program of the same tree.
Target: tcaudit at least 10x faster. Exit status 1 when missed.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tcaudit.analysis.attach import VerdictAnalyser  # noqa: E402
from tcaudit.kernel import bpf  # noqa: E402
from tcaudit.lab import sandbox  # noqa: E402


def main() -> int:
    if shutil.which("bpftool") is None:
        print("bpftool is missing: run make setup")
        return 1
    with sandbox.sandbox("tcatbv") as box:
        programs, _ = box.load_cilium_tree()
        ids = {name: prog.id for name, prog in programs.items()}
        insns = sum(bpf.prog_info(prog.fd).xlated_len // 8 for prog in programs.values())
        print(f"tree: {len(ids)} programs, {insns} xlated instructions")

        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(7):
            start = time.perf_counter()
            analysis = VerdictAnalyser().analysis(ids["cil_from_container"])
            ours.append(time.perf_counter() - start)
            assert not isinstance(analysis, str) and analysis.possible == {0, 2, 7}
            start = time.perf_counter()
            for prog_id in ids.values():
                subprocess.run(
                    ["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                    stdout=subprocess.DEVNULL,
                    check=True,
                )
            theirs.append(time.perf_counter() - start)

    mine, base = statistics.median(ours), statistics.median(theirs)
    print(f"{'':44} {'median ms':>10} {'min ms':>8}")
    print(
        f"{'tcaudit: ids -> verdicts (cold caches)':44} {mine * 1e3:10.1f} {min(ours) * 1e3:8.1f}"
    )
    print(
        f"{'bpftool prog dump xlated id N, each program':44} {base * 1e3:10.1f} "
        f"{min(theirs) * 1e3:8.1f}"
    )
    ok = base / mine >= 10
    print(f"\n{'PASS' if ok else 'FAIL'}  tcaudit >= 10x faster ({base / mine:.1f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
