"""The observer as bytecode: bpf/verdict_probe.c, assembled here instruction by
instruction, so the probe loads on a node with no compiler and no kernel headers.

It mirrors the C program exactly (tests/live/test_observer.py runs both on the same
traffic and compares every counter): read the slot from ``skb->tc_classid`` (cls_bpf
stores the running filter's classid there), look the slot up in the per-CPU
``probe_counts`` array, add one packet, ``skb->len`` bytes and one to the protocol's
counter, and return TC_ACT_UNSPEC whatever happens.
"""

from __future__ import annotations

import socket
from typing import Final

from tcaudit.analysis.insns import (
    BPF_ADD,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_IMM,
    BPF_JEQ,
    BPF_JMP,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_MAP_FD,
    BPF_STX,
    BPF_W,
    BPF_X,
    Insn,
    encode,
)

# struct __sk_buff (include/uapi/linux/bpf.h)
SKB_LEN: Final = 0
SKB_PROTOCOL: Final = 16
SKB_TC_CLASSID: Final = 72
# struct probe_counts (bpf/verdict_probe.h): six __u64
PACKETS, BYTES, IPV4, IPV6, ARP, OTHER = (8 * i for i in range(6))
COUNTS_SIZE: Final = 48
TC_ACT_UNSPEC: Final = -1
BPF_FUNC_MAP_LOOKUP_ELEM: Final = 1
# skb->protocol holds the ethertype in network byte order, read as a host-order u32
_IPV4, _IPV6, _ARP = (socket.htons(proto) for proto in (0x0800, 0x86DD, 0x0806))

R0, R1, R2, R3, R6, R10 = 0, 1, 2, 3, 6, 10


def _mov(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def _movx(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)


def _ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0)


def _stx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_STX | BPF_MEM | size, dst, src, off, 0)


def _bump(field: int, by_reg: int | None = None) -> list[Insn]:
    """``*(u64 *)(r0 + field) += 1`` (or ``+= by_reg``): per-CPU, so no atomics."""
    add = (
        Insn(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, 1)
        if by_reg is None
        else Insn(BPF_ALU64 | BPF_ADD | BPF_X, R3, by_reg, 0, 0)
    )
    return [_ldx(BPF_DW, R3, R0, field), add, _stx(BPF_DW, R0, R3, field)]


def _assemble(items: list[Insn | str | tuple[int, int, int, str]]) -> bytes:
    """Instructions, ``"label"`` strings, and ``(code, dst, imm, "label")`` jumps whose
    offset is resolved to the label (offset = target - (pc + 1))."""
    labels: dict[str, int] = {}
    pc = 0
    for item in items:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 1
    out: list[Insn] = []
    for item in items:
        if isinstance(item, str):
            continue
        if isinstance(item, tuple):
            code, dst, imm, label = item
            out.append(Insn(code, dst, 0, labels[label] - (len(out) + 1), imm))
        else:
            out.append(item)
    return encode(out)


JEQ: Final = BPF_JMP | BPF_JEQ | BPF_K
JA: Final = BPF_JMP


def observer_insns(map_fd: int) -> bytes:
    """The ``observe`` program, its map reference resolved to ``map_fd``."""
    return _assemble(
        [
            _movx(R6, R1),  # the skb, kept across the helper call
            _ldx(BPF_W, R1, R6, SKB_TC_CLASSID),  # the slot
            _stx(BPF_W, R10, R1, -4),
            _movx(R2, R10),
            Insn(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -4),
            Insn(BPF_LD | BPF_IMM | BPF_DW, R1, BPF_PSEUDO_MAP_FD, 0, map_fd),
            Insn(0, 0, 0, 0, 0),
            Insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
            # fail open: a slot that is not ours is not counted, the packet goes on
            (JEQ, R0, 0, "out"),
            *_bump(PACKETS),
            _ldx(BPF_W, R2, R6, SKB_LEN),
            *_bump(BYTES, R2),
            _ldx(BPF_W, R2, R6, SKB_PROTOCOL),
            (JEQ, R2, _IPV4, "ipv4"),
            (JEQ, R2, _IPV6, "ipv6"),
            (JEQ, R2, _ARP, "arp"),
            *_bump(OTHER),
            (JA, 0, 0, "out"),
            "ipv4",
            *_bump(IPV4),
            (JA, 0, 0, "out"),
            "ipv6",
            *_bump(IPV6),
            (JA, 0, 0, "out"),
            "arp",
            *_bump(ARP),
            "out",
            _mov(R0, TC_ACT_UNSPEC),
            Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        ]
    )


def empty_insns() -> bytes:
    """The benchmark's baseline: return TC_ACT_UNSPEC and nothing else."""
    return encode([_mov(R0, TC_ACT_UNSPEC), Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)])
