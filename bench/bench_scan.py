"""Scan speed on a node-like fixture, side by side with what people run today.

Fixture (issue 2): 250 pod namespaces, each joined to one host namespace by a veth pair,
clsact on both ends, three bpf filters per pair (pref 1 on the host side, pref 10 on each
end). Measured in one run, each command repeated:
  - `tcaudit scan --format json` over every namespace of the machine,
  - a shell loop of `tc filter show` over the same namespaces and links (both directions),
  - `ip netns exec NS bpftool net show` over every named namespace (which shows less).
Targets: tcaudit <= 1.0 s wall, >= 15x faster than the tc loop, faster than the bpftool
loop, peak RSS <= 100 MB. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tcaudit.lab import sandbox  # noqa: E402

TC_LOOP = r"""
for ns in $(ip netns list | cut -d' ' -f1); do
  for dev in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    tc -n "$ns" filter show dev "$dev" ingress
    tc -n "$ns" filter show dev "$dev" egress
  done
done
for dev in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
  tc filter show dev "$dev" ingress
  tc filter show dev "$dev" egress
done
"""
BPFTOOL_LOOP = r"""
for ns in $(ip netns list | cut -d' ' -f1); do ip netns exec "$ns" bpftool net show; done
bpftool net show
"""


def build(box: sandbox.Sandbox, pods: int) -> None:
    host = box.namespace("host")
    vendor = box.load_returning(0, "cil_from_contai")
    agent_in = box.load_returning(-1, "classifier_ingr")
    agent_eg = box.load_returning(-1, "classifier_egre")
    for i in range(pods):
        pod = box.namespace(f"p{i}")
        dev = f"lxc{i}"
        box.veth(host, dev, pod, "eth0")
        box.clsact(host, dev)
        box.clsact(pod, "eth0")
        box.attach(host, dev, "ingress", vendor, pref=1, handle=1, name=f"cil_from_container-{dev}")
        box.attach(
            host, dev, "ingress", agent_in, pref=10, handle=2, name=f"classifier_ingress_{i}"
        )
        box.attach(
            pod, "eth0", "ingress", agent_eg, pref=10, handle=1, name=f"classifier_egress_{i}"
        )


def timed(argv: list[str], *, stdout: int | None = subprocess.DEVNULL) -> tuple[float, int, bytes]:
    """(wall seconds, peak RSS in KiB of the child, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE if stdout is None else stdout, stderr=subprocess.DEVNULL
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed with status {status}")
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with sandbox.sandbox("tcatbench") as box:
        t0 = time.perf_counter()
        build(box, args.pods)
        print(
            f"fixture: {args.pods} pod namespaces + 1 host, {3 * args.pods} filters, "
            f"built in {time.perf_counter() - t0:.1f} s"
        )
        tcaudit = [sys.executable, "-m", "tcaudit", "scan", "--format", "json"]
        # warm the page cache and check what the scan sees
        _, _, out = timed(tcaudit, stdout=None)
        doc = json.loads(out)
        entries = sum(
            len(h["entries"])
            for ns in doc["namespaces"]
            for i in ns["interfaces"]
            for h in i["hooks"]
        )
        print(f"tcaudit sees {len(doc['namespaces'])} namespaces, {entries} entries")
        assert entries >= 3 * args.pods, entries

        runs: dict[str, list[float]] = {
            "tcaudit scan --format json": [],
            "shell loop of tc filter show": [],
            "ip netns exec NS bpftool net show": [],
        }
        rss: list[int] = []
        have_bpftool = shutil.which("bpftool") is not None
        for _ in range(args.repeat):
            wall, peak, _ = timed(tcaudit)
            runs["tcaudit scan --format json"].append(wall)
            rss.append(peak)
            runs["shell loop of tc filter show"].append(timed(["bash", "-c", TC_LOOP])[0])
            if have_bpftool:
                runs["ip netns exec NS bpftool net show"].append(
                    timed(["bash", "-c", BPFTOOL_LOOP])[0]
                )

    ours = statistics.median(runs["tcaudit scan --format json"])
    print(f"\n{'command':40} {'median s':>9} {'min s':>8} {'vs tcaudit':>11}")
    for name, values in runs.items():
        if not values:
            print(f"{name:40} {'(bpftool not installed)':>30}")
            continue
        median = statistics.median(values)
        print(f"{name:40} {median:9.3f} {min(values):8.3f} {median / ours:10.1f}x")
    peak_mb = max(rss) / 1024
    print(f"tcaudit peak RSS: {peak_mb:.1f} MB")

    tc_loop = statistics.median(runs["shell loop of tc filter show"])
    checks = [
        (f"tcaudit scan <= 1.0 s wall (median {ours:.3f} s)", ours <= 1.0),
        (f"tcaudit >= 15x faster than the tc loop ({tc_loop / ours:.1f}x)", tc_loop / ours >= 15),
        (f"peak RSS <= 100 MB ({peak_mb:.1f} MB)", peak_mb <= 100),
    ]
    if runs["ip netns exec NS bpftool net show"]:
        bpftool = statistics.median(runs["ip netns exec NS bpftool net show"])
        checks.append((f"faster than the bpftool loop ({bpftool / ours:.1f}x)", bpftool > ours))
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
