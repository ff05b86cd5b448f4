"""The observer's cost per packet, next to a classifier that only returns TC_ACT_UNSPEC.

Both programs come from bpf/verdict_probe.c (compiled once by bcc) and run in one process
through BPF_PROG_TEST_RUN with repeat = 1,000,000 on the same 64-byte IPv4 packet;
the kernel reports the average time per run. Target: the observer at most 2x the empty
program. Exit status 1 when missed.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tcaudit.kernel import bpf
from tcaudit.live.observer import Observer

REPEAT = 1_000_000
PACKET = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(49)


def main() -> int:
    with Observer() as observer:
        runs: dict[str, list[int]] = {"observer (counts per slot)": [],
                                      "empty (returns TC_ACT_UNSPEC)": []}
        for _ in range(5):
            for name, fd in (("observer (counts per slot)", observer.fd),
                             ("empty (returns TC_ACT_UNSPEC)", observer.empty_fd)):
                runs[name].append(bpf.prog_test_run(fd, PACKET, repeat=REPEAT).duration_ns)
        counted = observer.counts(0).packets
    print(f"BPF_PROG_TEST_RUN, repeat {REPEAT:,}, 5 rounds each (ns per run)")
    for name, values in runs.items():
        print(f"  {name:32} median {statistics.median(values):5.1f}   min {min(values)}")
    ratio = statistics.median(runs["observer (counts per slot)"]) / max(
        1, statistics.median(runs["empty (returns TC_ACT_UNSPEC)"]))
    assert counted >= 5 * REPEAT, counted  # it really counted every run
    ok = ratio <= 2.0
    print(f"\n{'PASS' if ok else 'FAIL'}  observer <= 2x the empty classifier ({ratio:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
