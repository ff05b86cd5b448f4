"""A 100-pod node with a distinct datapath per pod, scanned cold and warm (issue 12).

Fixture: one node namespace and 100 endpoint namespaces, all created by this bench
(sandbox.sandbox: unique names, removed on every exit path; the namespace the bench
starts in is never touched). Each endpoint is joined to the node namespace by a veth
pair and gets its own tail-call tree from ``fleet_tree`` (22 programs, about 24,000
instructions, one conditional jump per 4-5 instructions, spills, helper calls and their
errors, drop codes carried in ``skb->cb`` into a drop-notify tail call), compiled with
that endpoint's constants: as immediates in four trees out of five, in a frozen
``.rodata`` array in the fifth. The root sits where a CNI puts it: clsact ingress,
pref 1, on the host-side veth in the node namespace; the other 21 programs are in the
tree's own prog array. No two trees have the same code.

Measured in one run:
  - cold: ``tcaudit scan --format json --netns ...`` (the bench's 101 namespaces) in a
    fresh process with an empty ``TCAUDIT_CACHE_DIR``,
  - warm: the same command again on the cache the cold run filled,
  - ``bpftool prog dump xlated id N`` of a fixed sample of 100 of the programs (every
    P/100-th id), scaled to all P programs (the sample is timed, not the whole set),
  - peak RSS of the scan: the parent's peak plus its worker's. tcaudit runs with
    ``TCAUDIT_WORKERS=2`` here (the machine's two cores: this process and at most one
    forked worker, ``tcaudit.analysis.workers``). wait4's ru_maxrss of the scan is the
    larger of the two peaks (the kernel keeps the maximum over a process and the
    children it reaped), so the figure given is twice it: an upper bound of the sum,
    counting the pages the worker shares with its parent twice.
  - every scan runs from compiled bytecode, as an installed tcaudit does (pip compiles
    on install): the package is compiled first (``__pycache__``, ignored by git), so a
    PYTHONDONTWRITEBYTECODE in the caller's environment cannot make each run compile
    its 100 modules again (about 60 ms here).
  - beside them (``make bench``: bench/baseline.py), the baseline commit's code on the
    same fixture, cold and warm once each.
Targets: cold <= 2.0 s, warm <= 0.3 s, >= 50x faster than bpftool, RSS <= 200 MB.
The last line printed is the summary the issue asks for. Exit status 1 on a miss.

    python bench/bench_fleet_endpoints.py [--endpoints N] [--cold K] [--warm K]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import baseline  # noqa: E402
import fleet_tree as F  # noqa: E402

from tcaudit.analysis.insns import encode  # noqa: E402
from tcaudit.kernel import bpf  # noqa: E402
from tcaudit.lab import sandbox  # noqa: E402

RODATA_EVERY = 5  # endpoint k uses a .rodata map when k % 5 == 4
WORKERS = 2  # processes a scan may use (it forks at most WORKERS - 1 workers)


def build(
    box: sandbox.Sandbox, endpoints: int, keep: list[int]
) -> tuple[list[int], int, list[str]]:
    """The fixture; returns (every program id, xlated instructions, namespace names).
    ``keep`` receives the map fds that must stay open (a prog array is emptied when
    its last user reference goes)."""
    node = box.namespace("node")
    names = [node.name]
    shared = {}
    for name, (mtype, ksize, vsize, entries) in F.MAP_SPECS.items():
        shared[name] = bpf.map_create(mtype, ksize, vsize, entries, f"fl_{name}")
        keep.append(shared[name])
    prog_ids: list[int] = []
    xlated = 0
    for k in range(endpoints):
        ep = box.namespace(f"ep{k}")
        names.append(ep.name)
        dev = f"lxc{k}"
        box.veth(node, dev, ep, "eth0")
        box.clsact(node, dev)
        rodata = k % RODATA_EVERY == RODATA_EVERY - 1
        consts = F.EndpointConsts.for_endpoint(k, ifindex=node.ifindex(dev))
        calls = bpf.map_create(bpf.BPF_MAP_TYPE_PROG_ARRAY, 4, 4,
                                  F.PROG_ARRAY_ENTRIES, f"fl_calls{k}")
        keep.append(calls)
        ro = None
        if rodata:
            ro = bpf.map_create(bpf.BPF_MAP_TYPE_ARRAY, 4, F.RODATA_SIZE, 1,
                                   f"fl_ro{k}", bpf.BPF_F_RDONLY_PROG)
            keep.append(ro)
            bpf.map_update(ro, struct.pack("=I", 0), F.rodata_value(consts))
            bpf.map_freeze(ro)
        maps = F.MapRefs(prog_array=calls, rodata=ro, **shared)
        for name, insns in F.build_tree_code(k, rodata, consts=consts, maps=maps):
            fd = bpf.prog_load(encode(insns), name=name[:15])
            try:
                info = bpf.prog_info(fd)
                prog_ids.append(info.id)
                xlated += info.xlated_len // 8
                slot = F.slot_of(name)
                if slot is None:
                    root = sandbox.Program(fd=fd, name=name, id=info.id)
                    box.attach(node, dev, "ingress", root, pref=1, handle=1,
                               name=f"{name}-{dev}")
                else:
                    bpf.map_update(calls, struct.pack("=I", slot), struct.pack("=I", fd))
            finally:
                os.close(fd)  # the filter or the prog array holds the program now
    return prog_ids, xlated, names


def compiled_env(tree: Path) -> dict[str, str]:
    """The environment, bytecode allowed, with ``tree``'s package compiled."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "tcaudit")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def timed_rss(argv: list[str], env: dict[str, str],
              cwd: Path | None = None) -> tuple[float, int, bytes, int]:
    """(wall seconds, the peak RSS from wait4 in KiB (the scan's, or its worker's when
    larger), stdout, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            cwd=cwd)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, out, proc.returncode


def verdicts(doc: dict[str, object]) -> tuple[int, int]:
    """(bpf entries, entries whose verdict is known)."""
    entries = known = 0
    for ns in doc["namespaces"]:  # type: ignore[attr-defined]
        for itf in ns["interfaces"]:
            for hook in itf["hooks"]:
                for entry in hook["entries"]:
                    entries += 1
                    verdict = entry.get("verdict") or {}
                    if verdict.get("possible") is not None:
                        known += 1
    return entries, known


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--cold", type=int, default=2, help="cold runs (median)")
    parser.add_argument("--warm", type=int, default=3, help="warm runs (median)")
    args = parser.parse_args()
    # a TERM (a CI timeout, make interrupted) unwinds like an error: the sandbox's
    # namespaces and the temporary caches are removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    baseline_line = ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    keep: list[int] = []
    tmp = Path(tempfile.mkdtemp(prefix="tcaudit-fleet-"))
    try:
        with sandbox.sandbox("tcatfleet") as box:
            t0 = time.perf_counter()
            prog_ids, xlated, names = build(box, args.endpoints, keep)
            print(f"fixture: {args.endpoints} endpoint namespaces + 1 node namespace, "
                  f"{len(prog_ids)} programs, {xlated} xlated instructions, "
                  f"built in {time.perf_counter() - t0:.1f} s", flush=True)
            argv = [sys.executable, "-m", "tcaudit", "scan", "--format", "json"]
            for name in names:
                argv += ["--netns", name]
            compiled = {**compiled_env(HERE.parent), "TCAUDIT_WORKERS": str(WORKERS)}

            cold: list[float] = []
            rss: list[int] = []
            doc: dict[str, object] = {}
            for i in range(args.cold):
                cache = tmp / f"cold{i}"
                cache.mkdir(mode=0o700)
                env = {**compiled, "TCAUDIT_CACHE_DIR": str(cache)}
                wall, peak, out, code = timed_rss(argv, env)
                cold.append(wall)
                rss.append(peak)
                doc = json.loads(out)
                print(f"cold run {i + 1}: {wall:.2f} s, exit {code}, "
                      f"peak RSS {peak / 1024:.0f} MB", flush=True)
            warm: list[float] = []
            for i in range(args.warm):
                wall, peak, out, code = timed_rss(argv, env)
                warm.append(wall)
                rss.append(peak)
                print(f"warm run {i + 1}: {wall:.2f} s", flush=True)
            entries, known = verdicts(doc)
            print(f"the scan sees {entries} entries, {known} with a known verdict")
            if entries < args.endpoints:
                raise SystemExit(f"expected {args.endpoints} entries, saw {entries}")
            base = baseline.tree()
            if base is None:
                print("(no baseline checkout: run through make bench to time it beside "
                      "this one)")
            else:
                # the same command on the same fixture, the baseline's code (its own
                # cache, if it has one, empty first): once, it takes a while
                cache = tmp / "baseline"
                cache.mkdir(mode=0o700)
                benv = {**compiled_env(base),
                        "TCAUDIT_CACHE_DIR": str(cache), "PYTHONPATH": str(base)}
                bcold, bpeak, bout, bcode = timed_rss(argv, benv, cwd=base)
                bwarm, _p, _o, _c = timed_rss(argv, benv, cwd=base)
                bentries, bknown = verdicts(json.loads(bout))
                baseline_line = (f"baseline {baseline.commit()[:12]}: cold {bcold:.2f} s, "
                                 f"warm {bwarm:.2f} s, exit {bcode}, peak RSS "
                                 f"{bpeak / 1024:.0f} MB, {bknown} of {bentries} entries "
                                 "with a known verdict")
                print(baseline_line, flush=True)

            bpftool = shutil.which("bpftool")
            sample = prog_ids[:: max(1, len(prog_ids) // 100)][:100]
            t = time.perf_counter()
            for pid in sample:
                subprocess.run([bpftool or "bpftool", "prog", "dump", "xlated", "id",
                                str(pid)], stdout=subprocess.DEVNULL, check=True)
            per = (time.perf_counter() - t) / len(sample)
            bpftool_all = per * len(prog_ids)
            print(f"bpftool prog dump xlated: {per * 1000:.0f} ms a program over a sample "
                  f"of {len(sample)}, {bpftool_all:.1f} s scaled to {len(prog_ids)}")
    finally:
        for fd in keep:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)

    cold_s = statistics.median(cold)
    warm_s = statistics.median(warm)
    ratio = bpftool_all / cold_s
    rss_mb = WORKERS * max(rss) / 1024  # (see the module docstring)
    checks = [
        (f"cold scan <= 2.0 s ({cold_s:.2f} s)", cold_s <= 2.0),
        (f"warm scan <= 0.3 s ({warm_s:.2f} s)", warm_s <= 0.3),
        (f">= 50x faster than bpftool prog dump xlated ({ratio:.1f}x)", ratio >= 50),
        (f"peak RSS <= 200 MB ({rss_mb:.0f} MB: {WORKERS} x the larger of the parent's "
         "and its worker's peaks)", rss_mb <= 200),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if baseline_line:
        print(baseline_line)
    print(f"fleet endpoints={args.endpoints} programs={len(prog_ids)} insns={xlated} "
          f"cold={cold_s:.2f} s warm={warm_s:.2f} s bpftool={bpftool_all:.1f} s "
          f"ratio={ratio:.1f} rss={rss_mb:.0f} MB")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
