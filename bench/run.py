"""`make bench`: run every bench/bench_*.py in turn, beside the baseline commit of
bench/BASELINE where a benchmark supports it (baseline.py); exit 1 if any missed its
targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baseline  # noqa: E402


def host_speed() -> str:
    """How fast this machine runs Python right now: a shared or throttled host (a VM
    beside busy neighbours) moves every figure, the baseline's with it."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return f"host speed: a 10,000,000-step Python loop took {time.perf_counter() - start:.2f} s"


def main() -> int:
    failed = []
    print(host_speed(), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the worktree goes too
    with baseline.checkout() as base:
        env = dict(os.environ)
        if base is not None:
            env[baseline.ENV] = str(base)
            print(f"baseline: {baseline.commit()[:12]} checked out at {base}")
        for script in sorted(HERE.glob("bench_*.py")):
            print(f"\n=== {script.name} ===", flush=True)
            if subprocess.run([sys.executable, str(script)], env=env).returncode != 0:
                failed.append(script.name)
    print(f"\n{host_speed()}")
    if failed:
        print(f"\nmissed targets: {', '.join(failed)}")
        return 1
    print("\nall benchmarks met their targets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
