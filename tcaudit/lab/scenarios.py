"""`tcaudit lab`: the known tc conflicts, reproduced in network namespaces.

Each scenario builds a "host" namespace and pod namespaces joined by veth pairs (with
addresses), vendor stand-ins from bpf/lab/ attached the way the real vendor attaches
them (pref, handle, hook, filter name, program and map names, tail calls, verdicts; see
shared/reference/vendors.md) and, where the scenario says so, a CWS stand-in attached
the way system-probe does (its classifier_priority, on every interface of every lab
namespace, both directions, clsact created where missing).

Nothing touches the namespace tcaudit runs in. `up` records what it made in
/run/tcaudit/lab/NAME.json before making it; prog arrays are pinned under a bpffs
(they would be emptied when the last fd closes); TCX programs are attached with
BPF_PROG_ATTACH (links would end with the process). `down` removes exactly that: the
recorded processes, TCX attachments, pins and namespaces (their veths, qdiscs and
filters go with them), also after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcaudit.errors import EnvironmentProblem, UsageError
from tcaudit.inventory import made
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import BPF_TCX_EGRESS, BPF_TCX_INGRESS, PARENT_INGRESS
from tcaudit.kernel.rtnl import Netlink
from tcaudit.lab.sandbox import Namespace, Program, Sandbox
from tcaudit.live import traffic
from tcaudit.live.observer import bpf_source, headers_present, import_bcc

LAB_PREFIX = "tcalab-"
STATE_DIR = "/run/tcaudit/lab"
BPFFS = Path("/sys/fs/bpf")
BPF_FS_MAGIC = 0xCAFE4A11
CWS_PID = 2115  # system-probe's pid in the agent's filter names, as in datadog-cws.md


def state_dir() -> Path:
    return Path(os.environ.get("TCAUDIT_LAB_STATE_DIR", STATE_DIR))


@dataclass
class Build:
    """What a scenario builder works with."""

    name: str
    box: Sandbox
    host: Namespace
    pods: list[Namespace]
    prefix: str  # host-side veth names: lxc0, cali0, eni0...
    state: dict[str, Any]  # the record; save() it after each object is made
    standins: dict[str, Program] = field(default_factory=dict)
    bpf: list[Any] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)

    def save(self) -> None:
        _write_state(self.name, self.state)

    def pin(self, fd: int, name: str) -> None:
        directory = _pin_dir(self.name)
        directory.mkdir(parents=True, exist_ok=True)
        if str(directory) not in self.state["pins"]:
            self.state["pins"].append(str(directory))
            self.save()
        path = directory / name
        bpf.obj_pin(fd, str(path))
        self.pins.append(str(path))

    def cilium_tree(self) -> Program:
        """bpf/lab/cilium_like.c, its prog array pinned as Cilium pins cilium_calls: the
        tail calls must keep working after `lab up` exits."""
        programs, calls = self.box.load_cilium_tree()
        self.pin(calls, "cilium_calls")
        return programs["cil_from_container"]

    def cws(self, pref: int) -> None:
        """The CWS stand-in the way system-probe attaches it."""
        for ns in [self.host, *self.pods]:
            links = [link for link in ns.nl.links(stats=False)]
            for link in links:
                with contextlib.suppress(OSError):
                    ns.nl.add_clsact(link.ifindex)  # it creates clsact where missing
                for direction in ("ingress", "egress"):
                    uid = f"security{link.ifindex}_{os.stat(ns.path).st_ino}"
                    # handle 0: the kernel picks one, as it does for system-probe
                    self.box.attach(
                        ns,
                        link.name,
                        direction,
                        self.standins[f"classifier_{direction}"],
                        pref=pref,
                        handle=0,
                        name=f"classifier_{direction}_{uid}_{CWS_PID}",
                    )


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    expected_action: str
    expected_priority: int | None
    build: Callable[[Build], None]
    cws_pref: int | None = 10
    pods: int = 2
    host_prefix: str = "lxc"
    trigger: str | None = None  # what `lab trigger` does, if anything

    @property
    def expected(self) -> str:
        """The expected recommendation, e.g. "set-priority 4" or "disable-network"."""
        value = "" if self.expected_priority is None else f" {self.expected_priority}"
        return f"{self.expected_action}{value}"


def _on_host_veths(
    b: Build,
    direction: str,
    prog: Program,
    *,
    pref: int,
    handle: int,
    name: str,
    replace: bool = False,
) -> None:
    for i in range(len(b.pods)):
        dev = f"{b.prefix}{i}"
        b.box.attach(
            b.host,
            dev,
            direction,
            prog,
            pref=pref,
            handle=handle,
            name=name.replace("{dev}", dev),
            replace=replace,
        )


def _cilium_19(b: Build) -> None:
    root = b.cilium_tree()
    # Cilium 1.9: `tc filter replace ... pref 1 handle 1 bpf da obj bpf_lxc.o sec
    # from-container` on the host side of every pod veth
    _on_host_veths(
        b, "ingress", root, pref=1, handle=1, name="bpf_lxc.o:[from-container]", replace=True
    )


def _cilium_19_race(b: Build) -> None:
    # Agent 7.36-7.39.1 attached its own filter at the hard-coded pref 1 (handle 1 when
    # it came first); `lab trigger` then plays Cilium replacing it and the agent deleting
    # "its" filter, which by then holds Cilium's program
    for i in range(len(b.pods)):
        dev = f"lxc{i}"
        b.box.attach(
            b.host,
            dev,
            "ingress",
            b.standins["classifier_ingress"],
            pref=1,
            handle=1,
            name=f"classifier_ingress_security{i}_4026531992_{CWS_PID}",
        )


def _vendor_pref_5(b: Build) -> None:
    _on_host_veths(
        b, "ingress", b.standins["vendor_accept"], pref=5, handle=1, name="vendor_accept"
    )


def _calico(b: Build) -> None:
    # pref 0: the kernel picks 49152 (0xC000) on an empty chain, as `tc filter add`
    # without pref does for Calico 3.13-3.20
    for i in range(len(b.pods)):
        b.box.attach(
            b.host,
            f"cali{i}",
            "ingress",
            b.standins["calico_from_workload_ep"],
            pref=0,
            handle=1,
            name="from_wep_info.o:[calico_from_workload_ep]",
        )


def _aws(b: Build) -> None:
    # the names are the other way round on the veth: traffic INTO the pod leaves the
    # host-side veth (egress) and is the pod's ingress
    _on_host_veths(
        b, "egress", b.standins["handle_ingress"], pref=1, handle=1, name="handle_ingress"
    )
    _on_host_veths(
        b, "ingress", b.standins["handle_egress"], pref=1, handle=1, name="handle_egress"
    )


def _retina_007(b: Build) -> None:
    root = b.cilium_tree()
    _on_host_veths(b, "ingress", root, pref=1, handle=1, name="cil_from_container-{dev}")
    # added later at the same pref: it runs FIRST and its TC_ACT_OK starves Cilium
    _on_host_veths(
        b,
        "ingress",
        b.standins["endpoint_ingress_filter"],
        pref=1,
        handle=2,
        name="endpoint_ingres",
    )


def _cilium_116_tcx(b: Build) -> None:
    root = b.cilium_tree()
    for i in range(len(b.pods)):
        ref = b.box.tcx_attach(b.host, f"lxc{i}", "ingress", root, link=False)
        b.state["tcx"].append(
            {"netns": b.host.name, "dev": ref.dev, "direction": "ingress", "prog_id": root.id}
        )
        b.save()


def _istio(b: Build) -> None:
    for pod in b.pods:
        b.box.attach(
            pod,
            "eth0",
            "ingress",
            b.standins["ztunnel_ingress"],
            pref=1,
            handle=1,
            name="ztunnel_ingress",
        )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "cilium-1.9",
        "Cilium 1.9 puts bpf_lxc.o's from-container program on the host side of every pod "
        "veth at pref 1, handle 1, and it ends the chain with TC_ACT_OK (after tail calls "
        "through cilium_calls). Datadog CWS at its default pref 10 never sees those "
        "packets: the seed document's 'priority 1' case, where network detections do not "
        "work inside the containers.",
        "disable-network",
        None,
        _cilium_19,
    ),
    Scenario(
        "cilium-1.9-race",
        "Agent 7.36.0-7.39.1 loaded its classifiers at a hard-coded pref 1. When it came "
        "first it got pref 1 handle 1; Cilium <= 1.9 then replaced that filter with its own "
        "program; the agent, finding 'its' filter changed, deleted pref 1 handle 1 on stop, "
        "which now held Cilium's program: the pod lost connectivity (cilium/cilium#21345, "
        "fixed in 7.39.2). `tcaudit lab trigger cilium-1.9-race` replays it for "
        "`tcaudit watch`.",
        "keep",
        1,
        _cilium_19_race,
        cws_pref=None,
        trigger="race",
    ),
    Scenario(
        "vendor-pref-5",
        "A vendor accepts every packet at pref 5, ahead of CWS at 10: the seed document's "
        "'priority 2 to 10' case, fixed by a classifier_priority strictly below 5.",
        "set-priority",
        4,
        _vendor_pref_5,
    ),
    Scenario(
        "calico",
        "Calico eBPF 3.13-3.20 attaches with `tc filter add` and no pref, so the kernel "
        "picks 49152, and its programs hand packets on with TC_ACT_UNSPEC: harmless to "
        "CWS at 10.",
        "keep",
        10,
        _calico,
        host_prefix="cali",
    ),
    Scenario(
        "aws-network-policy",
        "The AWS network policy agent attaches handle_ingress / handle_egress at pref 1, "
        "handle 1 (not configurable) on both directions of the host-side veth and returns "
        "TC_ACT_OK for allowed traffic: later classifiers starve "
        "(aws-network-policy-agent#480).",
        "disable-network",
        None,
        _aws,
        host_prefix="eni",
    ),
    Scenario(
        "retina-0.0.7",
        "Retina < 0.0.8 added its packetparser at pref 1 on pod veths where Cilium already "
        "was; added last it ran first, returned TC_ACT_OK, and Cilium never ran: ClusterIP "
        "traffic broke (microsoft/retina#252, fixed by PR 276).",
        "disable-network",
        None,
        _retina_007,
    ),
    Scenario(
        "cilium-1.16-tcx",
        "Cilium 1.16 attaches through TCX by default; TCX runs before every clsact filter "
        "and TCX_PASS skips them all, so CWS (or any tc classifier) sees nothing and no "
        "priority helps (cilium/cilium#41393, microsoft/retina#1958).",
        "disable-network",
        None,
        _cilium_116_tcx,
    ),
    Scenario(
        "istio-ambient",
        "Istio ambient's eBPF redirect mode puts ztunnel programs inside the pod's own "
        "namespace at pref 1 returning TC_ACT_OK (or redirecting): CWS, which attaches in "
        "every namespace, is blind on the pod's eth0.",
        "disable-network",
        None,
        _istio,
        pods=1,
    ),
)


def scenario(name: str) -> Scenario:
    for known in SCENARIOS:
        if known.name == name:
            return known
    raise UsageError(f"no lab scenario named {name!r} (tcaudit lab list shows them)")


# -- state ------------------------------------------------------------------------------


def _state_path(name: str) -> Path:
    return state_dir() / f"{name}.json"


def _pin_dir(name: str) -> Path:
    # bpffs refuses names with a dot (kernel/bpf/inode.c bpf_lookup): cilium-1.9 -> cilium-1_9
    return _bpffs() / "tcaudit" / "lab" / name.replace(".", "_")


def _bpffs() -> Path:
    """/sys/fs/bpf when it is a bpffs (the usual), else a private one mounted under /run."""
    if _is_bpffs(BPFFS):
        return BPFFS
    private = Path("/run/tcaudit/bpffs")
    if not _is_bpffs(private):
        private.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "bpf", "bpf", str(private)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise EnvironmentProblem(
                f"no bpffs to pin the lab's prog arrays: {result.stderr.strip()}"
            )
    return private


def _is_bpffs(path: Path) -> bool:
    return bpf.fs_type(str(path)) == BPF_FS_MAGIC


def _write_state(name: str, state: dict[str, Any]) -> None:
    path = _state_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def read_state(name: str) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(_state_path(name).read_text())
    except (OSError, ValueError):
        return None
    return loaded


def namespaces_of(name: str) -> list[str]:
    """The netns names of a scenario that is up (the `--netns lab:NAME` resolver)."""
    state = read_state(name)
    if state is None:
        return []
    return [n for n in state.get("namespaces", []) if (Path("/run/netns") / n).exists()]


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    scenario: Scenario
    namespaces: tuple[str, ...]
    pins: tuple[str, ...]


def up(name: str) -> UpResult:
    chosen = scenario(name)
    if read_state(name) is not None:
        raise UsageError(f"lab scenario {name} is already up (tcaudit lab down {name})")
    import_bcc()
    if not headers_present():
        raise EnvironmentProblem(
            "the lab's stand-ins are compiled by bcc: install kernel headers (make setup)"
        )
    tag = f"{LAB_PREFIX}{name}"
    names = [f"{tag}-host", *(f"{tag}-pod{i}" for i in range(chosen.pods))]
    taken = [n for n in names if (Path("/run/netns") / n).exists()]
    if taken:
        raise UsageError(
            f"namespace {taken[0]} exists already and is not the lab's to "
            "reuse (ip netns del it, or tcaudit lab down if a lab made it)"
        )
    # the record is written before anything is made and updated after each object, so a
    # crash half-way leaves `down` knowing exactly what exists, and nothing else
    state: dict[str, Any] = {
        "scenario": name,
        "namespaces": [],
        "pins": [],
        "tcx": [],
        "pids": [],
        "created": time.time(),
    }
    _write_state(name, state)
    box = Sandbox(tag=tag)
    try:
        made = []
        for role in ("host", *(f"pod{i}" for i in range(chosen.pods))):
            made.append(box.namespace(role))
            state["namespaces"].append(made[-1].name)
            _write_state(name, state)
        host, pods = made[0], made[1:]
        for i, pod in enumerate(pods):
            box.veth(host, f"{chosen.host_prefix}{i}", pod, "eth0")
            box.clsact(host, f"{chosen.host_prefix}{i}")
            box.clsact(pod, "eth0")
        build = Build(name, box, host, pods, chosen.host_prefix, state)
        _, build.standins = box.load_c_many(
            bpf_source("lab/standins.c"),
            (
                "classifier_ingress",
                "classifier_egress",
                "calico_from_workload_ep",
                "handle_ingress",
                "handle_egress",
                "endpoint_ingress_filter",
                "ztunnel_ingress",
                "vendor_accept",
            ),
        )
        chosen.build(build)
        if chosen.cws_pref is not None:
            build.cws(chosen.cws_pref)
        box.release()
    except BaseException:
        box.close()
        down(name)
        raise
    return UpResult(chosen, tuple(names), tuple(build.pins))


@dataclass(frozen=True)
class DownResult:
    scenario: str
    removed: tuple[str, ...]
    left: tuple[str, ...]


def down(name: str) -> DownResult:
    state = read_state(name)
    if state is None:
        raise UsageError(f"lab scenario {name} is not up")
    removed: list[str] = []
    left: list[str] = []
    for proc in state.get("pids", []):
        pid, started = int(proc["pid"]), proc.get("started")
        # only the process the lab started: a recycled pid belongs to someone else
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                removed.append(f"process {pid}")
    for tcx in state.get("tcx", []):
        # explicit, though deleting the namespace (and its devices) would detach it too
        with contextlib.suppress(OSError):
            fd = nsfs.open_netns(f"/run/netns/{tcx['netns']}")
            try:
                prog = bpf.prog_fd_by_id(int(tcx["prog_id"]))
                try:
                    with nsfs.inside_netns(fd):
                        index = socket.if_nametoindex(str(tcx["dev"]))
                        attach = (
                            BPF_TCX_INGRESS
                            if tcx["direction"] == "ingress"
                            else BPF_TCX_EGRESS
                        )
                        bpf.tcx_prog_detach(prog, index, attach)
                        removed.append(f"TCX program {tcx['prog_id']} on {tcx['dev']}")
                finally:
                    os.close(prog)
            finally:
                os.close(fd)
    for pin_dir in state.get("pins", []):
        path = Path(pin_dir)
        try:
            if path.exists():
                for pinned in path.iterdir():
                    pinned.unlink()
                    removed.append(f"pin {pinned}")
                path.rmdir()
        except OSError as err:
            left.append(f"pins in {path}: {err.strerror}")
    for ns in state.get("namespaces", []):
        if (Path("/run/netns") / ns).exists():
            try:
                made.forget(str(Path("/run/netns") / ns))
                nsfs.delete_named_netns(ns)
                removed.append(f"namespace {ns}")
            except OSError as err:
                left.append(f"namespace {ns}: {err.strerror}")
    for ns in state.get("namespaces", []):
        if (Path("/run/netns") / ns).exists():
            left.append(f"namespace {ns}")
    _tidy_pin_root()
    if not left:
        _state_path(name).unlink(missing_ok=True)
    return DownResult(name, tuple(removed), tuple(left))


def _tidy_pin_root() -> None:
    """Remove the lab's empty pin directories (and our private bpffs) once unused."""
    root = _bpffs() / "tcaudit"
    for directory in (root / "lab", root):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty
    private = Path("/run/tcaudit/bpffs")
    if _is_bpffs(private) and not any(private.iterdir()):
        subprocess.run(["umount", str(private)], check=False)


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def running() -> list[str]:
    directory = state_dir()
    if not directory.exists():
        return []
    return sorted(p.stem for p in directory.glob("*.json"))


def send_traffic(name: str, rounds: int = 3) -> int:
    """Pings and UDP between the scenario's namespaces (both ends of every veth)."""
    names = namespaces_of(name)
    if not names:
        raise UsageError(f"lab scenario {name} is not up")
    fds = [nsfs.open_netns(f"/run/netns/{n}") for n in names]
    try:
        endpoints = []
        for fd in fds:
            with Netlink(fd) as nl:
                devs = {link.ifindex: link.name for link in nl.links(stats=False)}
                endpoints += [
                    traffic.Endpoint(fd, devs.get(i, "?"), a, p)
                    for i, a, p in nl.addresses()
                    if devs.get(i) != "lo"
                ]
        sent = 0
        for _ in range(rounds):
            sent += traffic.burst(endpoints, count=5)
            for a, b in traffic.pairs(endpoints):
                sent += traffic.send_ping(a.netns_fd, b.address, count=1)
        return sent
    finally:
        for fd in fds:
            os.close(fd)


def trigger(name: str) -> list[int]:
    """Run a scenario's dynamic part (the race) in child processes; returns their pids."""
    chosen = scenario(name)
    state = read_state(name)
    if state is None:
        raise UsageError(f"lab scenario {name} is not up")
    if chosen.trigger != "race":
        raise UsageError(f"lab scenario {name} has nothing to trigger")
    path = f"/run/netns/{state['namespaces'][0]}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tcaudit.lab.scenarios", "_race", role, path, "lxc0"]
        )
        for role in ("agent", "cilium")
    ]
    state["pids"] = [{"pid": p.pid, "started": _start_time(p.pid)} for p in procs]
    _write_state(name, state)
    try:
        for proc in procs:
            proc.wait(timeout=60)
    finally:
        for proc in procs:  # Ctrl-C or a hang: the race's processes end with us
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        state["pids"] = []
        _write_state(name, state)
    return [p.pid for p in procs]


def _race(role: str, netns_path: str, dev: str) -> int:
    """One side of the 7.36-7.39.1 x Cilium 1.9 race, in its own process (own socket)."""
    from tcaudit.lab.sandbox import returning

    Path("/proc/self/comm").write_text("system-probe" if role == "agent" else "cilium-agent")
    fd = nsfs.open_netns(netns_path)
    nl = Netlink(fd)
    index = nl.ifindex(dev)
    if index is None:
        return 2
    prog = bpf.prog_load(
        returning(-1 if role == "agent" else 0),
        name="classifier_ingr" if role == "agent" else "cil_from_contai",
    )
    mine = bpf.prog_info(prog).id
    deadline = time.monotonic() + 20
    if role == "agent":
        # the agent restarts: its filter at pref 1 handle 1 is there (lab up made it);
        # it replaces it with its new program, then watches it
        nl.add_bpf_filter(
            index,
            PARENT_INGRESS,
            pref=1,
            handle=1,
            prog_fd=prog,
            name=f"classifier_ingress_security1_4026531992_{os.getpid()}",
            replace=True,
        )
        while time.monotonic() < deadline:
            current = [f for f in nl.filters(index, PARENT_INGRESS) if f.pref == 1]
            if current and current[0].bpf and current[0].bpf.prog_id != mine:
                nl.delete_filter(index, PARENT_INGRESS, pref=1, handle=1, protocol=3, kind="bpf")
                break
            time.sleep(0.02)
    else:
        time.sleep(0.3)
        nl.add_bpf_filter(
            index,
            PARENT_INGRESS,
            pref=1,
            handle=1,
            prog_fd=prog,
            name=f"cil_from_container-{dev}",
            replace=True,
        )
    time.sleep(1.5)  # stay alive so a watcher can name us
    return 0


def cleanup_all() -> list[DownResult]:
    return [down(name) for name in running()]


def check_clean(name: str) -> list[str]:
    """What a scenario left behind: namespaces, pins, state (empty when clean)."""
    leftovers = (
        [n for n in os.listdir("/run/netns") if n.startswith(f"{LAB_PREFIX}{name}-")]
        if Path("/run/netns").exists()
        else []
    )
    if _pin_dir(name).exists():
        leftovers.append(str(_pin_dir(name)))
    if not running() and (_bpffs() / "tcaudit").exists():
        leftovers.append(str(_bpffs() / "tcaudit"))  # emptied and removed after the last
    if _state_path(name).exists():
        leftovers.append(str(_state_path(name)))
    return leftovers


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_race":
        raise SystemExit(_race(sys.argv[2], sys.argv[3], sys.argv[4]))
    raise SystemExit("usage: python -m tcaudit.lab.scenarios _race agent|cilium NETNS_PATH DEV")
