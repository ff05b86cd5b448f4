"""The kernel's tc, TCX and BPF numbers tcaudit relies on, in one place.

Pure constants (no system call here), so every layer may import them: the gateways
that speak rtnetlink and bpf(2), the scan and the watch that name hooks, the
analysis that reads return values, and the lab that attaches stand-ins.

Sources: include/uapi/linux/pkt_sched.h (TC_H_*), include/uapi/linux/pkt_cls.h
(TC_ACT_*), include/uapi/linux/bpf.h (enum bpf_attach_type, enum tcx_action_base,
enum bpf_func_id), net/sched/sch_ingress.c (clsact's two minor handles).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# qdisc and filter parents (pkt_sched.h; clsact's minors from sch_ingress.c)
TC_H_CLSACT = 0xFFFFFFF1
"""== TC_H_INGRESS: clsact and ingress share the parent handle."""
PARENT_INGRESS = 0xFFFFFFF2  # ffff:fff2, TC_H_MIN_INGRESS
PARENT_EGRESS = 0xFFFFFFF3  # ffff:fff3, TC_H_MIN_EGRESS
CLSACT_HANDLE = 0xFFFF0000
TCM_IFINDEX_MAGIC_BLOCK = 0xFFFFFFFF

# enum bpf_attach_type: TCX arrived in Linux 6.6 (CONFIG_NET_XGRESS)
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47

# enum bpf_func_id
BPF_FUNC_TAIL_CALL = 12

CLSACT_PARENT: Mapping[str, int] = MappingProxyType(
    {"clsact/ingress": PARENT_INGRESS, "clsact/egress": PARENT_EGRESS}
)
"""A clsact hook's name -> the parent its filters hang on."""
PARENT_HOOK: Mapping[int, str] = MappingProxyType({v: k for k, v in CLSACT_PARENT.items()})
"""A filter's parent -> the clsact hook's name."""
TCX_ATTACH: Mapping[str, int] = MappingProxyType(
    {"tcx/ingress": BPF_TCX_INGRESS, "tcx/egress": BPF_TCX_EGRESS}
)
"""A TCX hook's name -> its bpf attach type."""

# pkt_cls.h: what a classifier returns
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_RECLASSIFY = 1
TC_ACT_SHOT = 2
TC_ACT_PIPE = 3
TC_ACT_STOLEN = 4
TC_ACT_QUEUED = 5
TC_ACT_REPEAT = 6
TC_ACT_REDIRECT = 7
TC_ACT_TRAP = 8

# bpf.h enum tcx_action_base
TCX_NEXT = -1
TCX_PASS = 0
TCX_DROP = 2
TCX_REDIRECT = 7

TC_ACT_NAMES: Mapping[int, str] = MappingProxyType(
    {
        TC_ACT_UNSPEC: "TC_ACT_UNSPEC",
        TC_ACT_OK: "TC_ACT_OK",
        TC_ACT_RECLASSIFY: "TC_ACT_RECLASSIFY",
        TC_ACT_SHOT: "TC_ACT_SHOT",
        TC_ACT_PIPE: "TC_ACT_PIPE",
        TC_ACT_STOLEN: "TC_ACT_STOLEN",
        TC_ACT_QUEUED: "TC_ACT_QUEUED",
        TC_ACT_REPEAT: "TC_ACT_REPEAT",
        TC_ACT_REDIRECT: "TC_ACT_REDIRECT",
        TC_ACT_TRAP: "TC_ACT_TRAP",
    }
)
TCX_NAMES: Mapping[int, str] = MappingProxyType(
    {TCX_NEXT: "TCX_NEXT", TCX_PASS: "TCX_PASS", TCX_DROP: "TCX_DROP", TCX_REDIRECT: "TCX_REDIRECT"}
)
