"""`tcaudit watch` under churn: 10,000 filter add/delete events across 50 namespaces.

In one run, side by side:
  - `tcaudit watch --format jsonl` over the 50 namespaces (one process);
  - today's way: one `tc -n NS monitor` per namespace (50 processes), lines counted.
A writer adds and deletes 5,000 filters (round robin over the namespaces, as fast as it
can). Targets: tcaudit reports all 10,000 events (counted from its summary), loses none,
finishes within 30 s of the first change, and its peak RSS stays bounded (<= 150 MB).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tcaudit.kernel.abi import PARENT_INGRESS  # noqa: E402
from tcaudit.lab import sandbox  # noqa: E402

NAMESPACES = 50
FILTERS = 5000


def main() -> int:
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"tcaudit-bench-watch-{os.getpid()}"
    workdir.mkdir()
    with sandbox.sandbox("tcatbw") as box:
        host = box.namespace("host")
        pods = []
        for i in range(NAMESPACES):
            pod = box.namespace(f"p{i}")
            box.veth(host, f"v{i}", pod, "eth0")
            box.clsact(pod, "eth0")
            pods.append(pod)
        prog = box.load_returning(-1, "churn")
        selectors = [arg for pod in pods for arg in ("--netns", pod.name)]
        out = (workdir / "watch.jsonl").open("w")
        watch = subprocess.Popen([sys.executable, "-m", "tcaudit", "watch", "--format", "jsonl",
                                  "--duration", "120s", *selectors], stdout=out,
                                 stderr=subprocess.DEVNULL, cwd=ROOT)
        monitors = [subprocess.Popen(["tc", "-n", pod.name, "monitor"],
                                     stdout=(workdir / f"mon{i}.txt").open("w"),
                                     stderr=subprocess.DEVNULL)
                    for i, pod in enumerate(pods)]
        try:
            time.sleep(2.5)  # both have subscribed and read the initial state
            start = time.monotonic()
            for n in range(FILTERS):
                pod = pods[n % NAMESPACES]
                index = pod.ifindex("eth0")
                pref = 100 + n // NAMESPACES
                pod.nl.add_bpf_filter(index, PARENT_INGRESS, pref=pref, handle=1,
                                      prog_fd=prog.fd, name=f"churn{n}")
                pod.nl.delete_filter(index, PARENT_INGRESS, pref=pref, handle=1, protocol=3,
                                     kind="bpf")
            written = time.monotonic() - start
            deadline = start + 30
            seen = 0
            while time.monotonic() < deadline:
                seen = sum(1 for line in (workdir / "watch.jsonl").read_text().splitlines()
                           if '"what": "filter-' in line)
                if seen >= 2 * FILTERS:
                    break
                time.sleep(0.2)
            caught_up = time.monotonic() - start
            watch.send_signal(signal.SIGINT)
            _, status, usage = os.wait4(watch.pid, 0)
            watch.returncode = os.waitstatus_to_exitcode(status)
        finally:
            # never leave a watcher or 50 monitors holding the namespaces alive
            for proc in [watch, *monitors]:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.close()
        lines = (workdir / "watch.jsonl").read_text().splitlines()
        summary = json.loads(lines[-1])
        monitor_lines = sum(
            1 for i in range(NAMESPACES)
            for line in (workdir / f"mon{i}.txt").read_text().splitlines()
            if line.startswith(("added filter", "deleted filter", "filter"))
        )
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()

    events = summary["events"]
    counted = events.get("filter-added", 0) + events.get("filter-deleted", 0)
    rss_mb = usage.ru_maxrss / 1024
    print(f"writer: {2 * FILTERS} changes over {NAMESPACES} namespaces in {written:.1f} s")
    print(f"{'':38} {'events':>8} {'lost':>5} {'caught up':>10}")
    print(f"{'tcaudit watch (1 process)':38} {counted:8} {summary['lost']:5} "
          f"{caught_up:9.1f}s")
    print(f"{'tc -n NS monitor (50 processes)':38} {monitor_lines:8} {'?':>5} {'-':>10}")
    print("(tc monitor lines carry no vendor, verdict or actor; tcaudit events do)")
    print(f"tcaudit watch peak RSS: {rss_mb:.1f} MB")
    checks = [
        (f"all {2 * FILTERS} events reported ({counted})", counted == 2 * FILTERS),
        (f"no event lost ({summary['lost']} overruns)", summary["lost"] == 0),
        (f"caught up within 30 s of the first change ({caught_up:.1f} s)", caught_up <= 30),
        (f"peak RSS <= 150 MB ({rss_mb:.1f} MB)", rss_mb <= 150),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
