"""What kernel helpers return, and which of their arguments they write through.

One table, from the helpers' documentation in include/uapi/linux/bpf.h and their code
in net/core/filter.c (``BPF_CALL_x(bpf_...)``). A helper's ``long`` result reaches r0
as a 64-bit value, so ``return -EFAULT`` is -14 in 64 bits. Errors are negative errnos,
never below -MAX_ERRNO (-4095, include/linux/err.h).

Names are the kallsyms names of the xlated ``call`` targets, without the ``bpf_``
prefix. The verifier replaces map helper calls by direct calls to the map type's
implementation (kernel/bpf/verifier.c do_misc_fixups: ``ops->map_lookup_elem`` etc.),
so ``htab_map_lookup_elem`` and friends are matched by their suffix. A helper that is
not in the table returns an unknown 64-bit value.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from tcaudit.analysis import scalar as S
from tcaudit.analysis.insns import BPF_FUNC_TAIL_CALL
from tcaudit.analysis.scalar import Scalar

MAX_ERRNO = 4095


class Contract(NamedTuple):
    """Return range of a helper (signed 64-bit, inclusive) and its written buffers.

    ``writes``: (pointer argument, length) pairs the helper may write through: the
    length is the number of the argument holding it, -N for a fixed N bytes, or 0 when
    unknown (up to the frame's top). Any other pointer argument is only read.
    """

    lo: int
    hi: int
    writes: tuple[tuple[int, int], ...] = ()
    only: tuple[int, ...] = ()
    """When set: exactly these values (within [lo, hi])."""


_ERR0 = (-MAX_ERRNO, 0)
_ANY = Contract(S.S64_MIN, S.S64_MAX)

_TABLE: Mapping[str, Contract] = MappingProxyType(
    {
        # bpf_redirect*: TC_ACT_SHOT on bad flags, TC_ACT_REDIRECT otherwise
        "redirect": Contract(2, 7, only=(2, 7)),
        "redirect_peer": Contract(2, 7, only=(2, 7)),
        "redirect_neigh": Contract(2, 7, only=(2, 7)),
        # 0 or a negative errno
        "skb_load_bytes": Contract(*_ERR0, ((3, 4),)),
        "skb_load_bytes_relative": Contract(*_ERR0, ((3, 4),)),
        "skb_store_bytes": Contract(*_ERR0),
        "l3_csum_replace": Contract(*_ERR0),
        "l4_csum_replace": Contract(*_ERR0),
        # the result of dev_queue_xmit / netif_rx: also positive codes (NET_XMIT_DROP 1,
        # NET_XMIT_CN 2), "not defined" by the uapi documentation
        "clone_redirect": Contract(-MAX_ERRNO, S.S32_MAX),
        "skb_vlan_push": Contract(*_ERR0),
        "skb_vlan_pop": Contract(*_ERR0),
        "skb_change_proto": Contract(*_ERR0),
        "skb_change_type": Contract(*_ERR0),
        "skb_adjust_room": Contract(*_ERR0),
        "skb_change_tail": Contract(*_ERR0),
        "skb_change_head": Contract(*_ERR0),
        "skb_pull_data": Contract(*_ERR0),
        "skb_get_tunnel_key": Contract(*_ERR0, ((2, 3),)),
        "skb_set_tunnel_key": Contract(*_ERR0),
        "skb_set_tunnel_opt": Contract(*_ERR0),
        "skb_get_xfrm_state": Contract(*_ERR0, ((3, 4),)),
        "skb_set_tstamp": Contract(*_ERR0),
        "perf_event_output": Contract(*_ERR0),
        "skb_event_output": Contract(*_ERR0),
        "ringbuf_output": Contract(*_ERR0),
        "sk_assign": Contract(*_ERR0),
        "spin_lock": Contract(0, 0),
        "spin_unlock": Contract(0, 0),
        "set_hash_invalid": Contract(0, 0),
        "set_hash": Contract(0, 0),
        "sk_release": Contract(*_ERR0),
        # the option length on success
        "skb_get_tunnel_opt": Contract(-MAX_ERRNO, S.S32_MAX, ((2, 3),)),
        # BPF_FIB_LKUP_RET_* (small, non-negative) or a negative errno; the helper is
        # bpf_skb_fib_lookup for tc programs, bpf_xdp_fib_lookup for XDP
        "skb_fib_lookup": Contract(-MAX_ERRNO, 255, ((2, 3),)),
        "xdp_fib_lookup": Contract(-MAX_ERRNO, 255, ((2, 3),)),
        # BPF_MTU_CHK_RET_* or a negative errno (bpf_skb_check_mtu, bpf_xdp_check_mtu)
        "skb_check_mtu": Contract(-MAX_ERRNO, 255, ((3, -4),)),
        "xdp_check_mtu": Contract(-MAX_ERRNO, 255, ((3, -4),)),
        "skb_ecn_set_ce": Contract(0, 1),
        "skb_under_cgroup": Contract(-MAX_ERRNO, 1),
        # 32-bit results
        "user_rnd_u32": Contract(0, S.M32),
        "get_hash_recalc": Contract(0, S.M32),
        "get_cgroup_classid": Contract(0, S.M32),
        "get_route_realm": Contract(0, S.M32),
        "get_smp_processor_id": Contract(0, S.M32),
        "get_numa_node_id": Contract(0, S.M32),
        "csum_level": Contract(-MAX_ERRNO, 3),
        # any 64-bit value (times, ids, cookies, checksums, pointers or NULL), and no
        # argument written: their pointer arguments, if any, are only read
        **{
            name: _ANY
            for name in (
                "ktime_get_ns", "ktime_get_boot_ns", "ktime_get_coarse_ns",
                "ktime_get_tai_ns", "jiffies64", "skb_cgroup_id", "skb_ancestor_cgroup_id",
                "get_socket_cookie", "get_socket_uid", "get_netns_cookie", "csum_diff",
                "csum_update", "trace_printk", "sk_lookup_tcp", "sk_lookup_udp",
                "skc_lookup_tcp", "tcp_sock", "sk_fullsock", "get_listener_sock",
                "skc_to_tcp_sock", "skc_to_tcp6_sock", "skc_to_udp6_sock",
                "get_current_task", "get_current_pid_tgid", "get_current_uid_gid",
                "skb_cgroup_classid",
            )
        },
    }
)

_LOOKUP = Contract(S.S64_MIN, S.S64_MAX)
"""map lookups (and the verifier's direct calls to a map type's lookup): a pointer to
the value or NULL; the key is only read."""
_MAP_WRITE = Contract(*_ERR0)
"""map update / delete / push / pop implementations: 0 or a negative errno."""


def contract(name: str | None) -> Contract | None:
    """The contract of a helper by kallsyms name, None when not known."""
    if name is None:
        return None
    short = name[4:] if name.startswith("bpf_") else name
    found = _TABLE.get(short)
    if found is not None:
        return found
    if short.endswith(("_update_elem", "_delete_elem", "_push_elem")):
        return _MAP_WRITE
    if short.endswith(("_lookup_elem", "_lookup_percpu_elem")):
        return _LOOKUP
    if short.endswith("_pop_elem") or short.endswith("_peek_elem"):
        return Contract(-MAX_ERRNO, 0, ((2, 0),))
    return None


READONLY_ARGS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "map_lookup_elem": (2,),
        "map_lookup_percpu_elem": (2,),
        "map_update_elem": (2, 3),
        "map_delete_elem": (2,),
        "map_push_elem": (2,),
        "redirect_neigh": (2,),
        "skb_store_bytes": (3,),
        "csum_diff": (1, 3),
        "perf_event_output": (4,),
        "skb_output": (4,),
        "ringbuf_output": (2,),
        "trace_printk": (1,),
        # the socket lookups read the tuple (ARG_PTR_TO_MEM | MEM_RDONLY in
        # net/core/filter.c, bpf_sk_lookup_tcp_proto and the tc variants the verifier
        # calls for a tc program, bpf_tc_sk_lookup_tcp_proto etc.)
        "sk_lookup_tcp": (2,),
        "sk_lookup_udp": (2,),
        "skc_lookup_tcp": (2,),
        "tc_sk_lookup_tcp": (2,),
        "tc_sk_lookup_udp": (2,),
        "tc_skc_lookup_tcp": (2,),
    }
)
"""Pointer arguments that helpers outside the table only read (the rest may be written,
from the pointer up to the frame's top)."""


def short_name(name: str | None) -> str | None:
    if name is None:
        return None
    return name[4:] if name.startswith("bpf_") else name


def returns(c: Contract, reason: str) -> Scalar:
    if c.only:
        return frozenset(x & S.M64 for x in c.only)
    r = S.norm(c.lo, c.hi, 0, S.M64, 0, S.M64, reason)
    assert r is not None
    return r


def is_tail_call(name: str | None) -> bool:
    return name == "bpf_tail_call"


def tail_call_helper(imm: int, name: str | None) -> bool:
    """A helper call (id ``imm``, kallsyms ``name``) that is bpf_tail_call: by its id in
    raw code, by its name in xlated code (where the id became an address offset)."""
    return imm == BPF_FUNC_TAIL_CALL or is_tail_call(name)


def is_lookup(name: str | None) -> bool:
    return name is not None and name.endswith(("_lookup_elem", "_lookup_percpu_elem"))


def is_throw(name: str | None) -> bool:
    return name == "bpf_throw"


def has_callbacks(name: str | None) -> bool:
    """Helpers that call back into the program (their callbacks may write the frame)."""
    if name is None:
        return False
    short = name[4:] if name.startswith("bpf_") else name
    return short in ("loop", "for_each_map_elem", "timer_set_callback", "find_vma",
                     "user_ringbuf_drain")
