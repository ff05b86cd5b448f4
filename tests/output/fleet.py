"""A node-sized hand-built scan (deterministic, no kernel): the host namespace with an
uplink and one Cilium-fronted veth per pod, and 250 pod namespaces, CWS on every pod
``eth0`` (issue 16's fixture, the shape of bench/bench_scan.py's). Two pods are unusual:
``tcaf-pod-100`` carries a classifier no fingerprint knows, ahead of CWS, and
``tcaf-pod-200`` one whose verdict is unknown (after CWS)."""

from __future__ import annotations

from dataclasses import replace

from tcaudit.model import Entry, Hook, Host, Interface, NamespaceScan, Netns, Scan, Verdict
from tcaudit.vendors.attribution import add_vendors
from tests.output.test_golden import cws, program, verdict

PODS = 250
ODD = 100  # an unknown vendor's accepting filter at pref 5, ahead of CWS
UNKNOWN = 200  # a filter of unknown verdict at pref 20, behind CWS


def cilium(i: int) -> Entry:
    return Entry(pref=1, handle=1, chain=0, protocol="all", kind="bpf", direct_action=True,
                 filter_name=f"cil_from_container-lxc{i}",
                 program=program(1000 + i, "cil_from_contai", ("cilium_calls_00",),
                                 "cilium-agent"),
                 verdict=verdict(0, 2, 7, effective=("accept", "drop", "redirect")))


def clsact(direction: str, *entries: Entry) -> Hook:
    return Hook(f"clsact/{direction}", True, entries, qdisc="clsact")


def empty_hooks(qdisc: bool) -> tuple[Hook, ...]:
    return (
        Hook("tcx/ingress", True, ()),
        Hook("clsact/ingress", qdisc, (), qdisc="clsact" if qdisc else None,
             note=None if qdisc else "no clsact qdisc"),
        Hook("tcx/egress", True, ()),
        Hook("clsact/egress", qdisc, (), qdisc="clsact" if qdisc else None,
             note=None if qdisc else "no clsact qdisc"),
    )


def with_clsact(ingress: tuple[Entry, ...], egress: tuple[Entry, ...]) -> tuple[Hook, ...]:
    hooks = list(empty_hooks(True))
    hooks[1] = clsact("ingress", *ingress)
    hooks[3] = clsact("egress", *egress)
    return tuple(hooks)


def pod(i: int) -> NamespaceScan:
    ingress: tuple[Entry, ...] = (cws(21, "ingress"),)
    egress: tuple[Entry, ...] = (cws(22, "egress"),)
    if i == ODD:
        stranger = Entry(pref=5, handle=1, chain=0, protocol="all", kind="bpf",
                         direct_action=True, filter_name="acme_guard",
                         program=program(9000, "acme_guard"),
                         verdict=verdict(0, 2, effective=("accept", "drop")))
        ingress = (stranger, *ingress)
    if i == UNKNOWN:
        mystery = Entry(pref=20, handle=1, chain=0, protocol="all", kind="bpf",
                        direct_action=True, filter_name="cil_from_container-mystery",
                        program=program(9001, "cil_from_contai"),
                        verdict=Verdict(None, None, "static", "helper 999 is not known"))
        egress = (*egress, mystery)
    netns = Netns(id=4026533000 + i, dev=4, names=(f"tcaf-pod-{i}",), pids=(5000 + i,),
                  label=f"tcaf-pod-{i}", path=f"/run/netns/tcaf-pod-{i}")
    return NamespaceScan(netns, (
        Interface("lo", 1, None, empty_hooks(False)),
        Interface("eth0", 2, "veth", with_clsact(ingress, egress)),
    ))


def fleet(pods: int = PODS) -> Scan:
    host_interfaces = [
        Interface("lo", 1, None, empty_hooks(False)),
        Interface("eth0", 2, "device", with_clsact((cws(21, "ingress"),), (cws(22, "egress"),))),
    ]
    host_interfaces += [
        Interface(f"lxc{i}", 100 + i, "veth",
                  with_clsact((cilium(i), cws(21, "ingress")), (cws(22, "egress"),)))
        for i in range(1, pods + 1)
    ]
    host = NamespaceScan(
        Netns(id=4026531840, dev=4, names=(), pids=(1,), label="self", path="", is_self=True),
        tuple(host_interfaces),
    )
    scan = Scan(Host(hostname="node-250", kernel="6.18.0", tcx=True),
                (host, *(pod(i) for i in range(1, pods + 1))))
    return add_vendors(scan)


def relabel(scan: Scan, index: int, label: str) -> Scan:
    """``scan`` with namespace ``index`` called ``label`` (its names too)."""
    spaces = list(scan.namespaces)
    ns = spaces[index]
    spaces[index] = replace(ns, netns=replace(ns.netns, label=label, names=(label,)))
    return replace(scan, namespaces=tuple(spaces))
