"""Cilium-like per-endpoint tail-call trees, as raw eBPF, for the fleet benchmark.

One tree is what a CNI compiles for one endpoint: a root (``cil_from_container``,
attached to the host-side veth) and 21 programs in the tree's own prog array (slots
1..21): IPv4/IPv6 handling, conntrack, policy, NAT, load balancing, ICMP, fragments,
extension headers, encapsulation, proxy, delivery, and a drop-notify program. Drop paths
put a drop code (or a helper's error) into ``skb->cb[0]`` and the endpoint id into
``cb[1]`` and tail-call drop-notify, which reads them and returns SHOT (or OK for a few
codes). Other paths return TC_ACT_OK, or bpf_redirect()'s result (TC_ACT_REDIRECT).

Every program's *shape* (opcodes, registers, offsets, jump targets) comes from a
random generator seeded by its role alone, so every endpoint's tree has the same shapes
and the trees differ only in the per-endpoint constants (endpoint id, IPv4 address, MAC,
ifindex, security identity) and in map references. The constants are immediates, or
(``rodata=True``) loads from a frozen read-only one-element array referenced with
``BPF_PSEUDO_MAP_VALUE``, as loaders do for ``.rodata``; the two variants are two shape
families.

Verifier-friendliness, by construction: the packet is bounds-checked once to 74 bytes
and only read below that (plus one variable-offset L4 read with its own check);
conditional jumps compare freshly loaded or freshly computed values against immediates
inside their range (no branch the verifier can decide from a value, so its dead-code
removal never depends on a constant); diamonds only change imprecise scalars, and stack
slots are all written as spills in the prologue and after that only on straight-line
code, so paths re-join and prune.

Nothing here touches the kernel: :func:`build_tree_code` gives one tree's programs with
whatever map fds (or placeholders) it is handed.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tcaudit.analysis import insns as I
from tcaudit.analysis.insns import Insn

__all__ = [
    "MAP_SPECS",
    "PROG_ARRAY_ENTRIES",
    "RODATA_SIZE",
    "ROLES",
    "EndpointConsts",
    "MapRefs",
    "Role",
    "branch_density",
    "build_tree_code",
    "conditional_jumps",
    "rodata_value",
    "slot_of",
]

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
B, H, W, DW = I.BPF_B, I.BPF_H, I.BPF_W, I.BPF_DW
_SIZE = {1: B, 2: H, 4: W, 8: DW}

# helper ids (enum bpf_func_id)
MAP_LOOKUP, MAP_UPDATE, KTIME, PRANDOM, SMP_ID, TAIL_CALL = 1, 2, 5, 7, 8, 12
REDIRECT, SKB_LOAD_BYTES, CSUM_DIFF = 23, 26, 28

# struct __sk_buff offsets readable (and, for cb, writable) by sched_cls programs
SKB_LEN, SKB_MARK, SKB_PROTOCOL, SKB_VLAN_TCI, SKB_PRIORITY = 0, 8, 16, 24, 32
SKB_INGRESS_IFINDEX, SKB_IFINDEX, SKB_TC_INDEX, SKB_CB, SKB_HASH = 36, 40, 44, 48, 68
SKB_DATA, SKB_DATA_END = 76, 80
CTX_FIELDS = (SKB_LEN, SKB_MARK, SKB_PROTOCOL, SKB_VLAN_TCI, SKB_PRIORITY,
              SKB_INGRESS_IFINDEX, SKB_IFINDEX, SKB_TC_INDEX, SKB_HASH)

TC_ACT_OK, TC_ACT_SHOT = 0, 2
PKT_RANGE = 74  # the prologue's bounds check: eth + IPv6 header + 20 bytes of L4

# main-program stack frame (bytes below r10); 176 bytes, so with a 64-byte subprogram
# frame the call chain stays under the 256 bytes allowed next to tail calls
SPILLS = tuple(-8 * k for k in range(1, 9))  # -8 .. -64
KEY16, KEY8, VAL16, BUF, BUF2, KEY4 = -80, -88, -104, -136, -168, -176
FRAME_SLOTS = (*SPILLS, KEY16, KEY16 + 8, KEY8, VAL16, VAL16 + 8,
               *(BUF + 8 * k for k in range(4)), *(BUF2 + 8 * k for k in range(4)), KEY4)

PROG_ARRAY_ENTRIES = 32
RODATA_SIZE = 32
# field -> (offset in the .rodata value, size)
RODATA_FIELDS: dict[str, tuple[int, int]] = {
    "endpoint_id": (0, 4),
    "ipv4": (4, 4),
    "mac_hi": (8, 4),
    "mac_lo": (12, 2),
    "ifindex": (16, 4),
    "identity": (20, 4),
}

# node-wide maps shared by every tree: name -> (type, key size, value size, entries)
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY = 1, 2
MAP_SPECS: dict[str, tuple[int, int, int, int]] = {
    "policy": (BPF_MAP_TYPE_HASH, 8, 8, 1024),
    "ct4": (BPF_MAP_TYPE_HASH, 16, 16, 1024),
    "ct6": (BPF_MAP_TYPE_HASH, 16, 16, 1024),
    "nat": (BPF_MAP_TYPE_HASH, 16, 16, 1024),
    "lb": (BPF_MAP_TYPE_HASH, 8, 8, 1024),
    "metrics": (BPF_MAP_TYPE_ARRAY, 4, 16, 256),
}

# Cilium-style drop reasons (negative, as the datapath's DROP_* codes)
DROP_CODES = (-130, -131, -132, -133, -134, -135, -136, -137, -139, -140, -141, -142,
              -143, -144, -145, -146, -147, -150, -151, -152, -153, -154, -155, -156,
              -157, -158, -159, -160, -161, -162, -163, -164, -165, -166, -167, -168)
DROP_MISSED_TAIL_CALL = -169
OK_CODES = (-151, -158, -165)  # audit-mode drops: drop-notify lets these pass


@dataclass(frozen=True)
class EndpointConsts:
    """The per-endpoint constants a CNI compiles into an endpoint's programs.

    ``ipv4``, ``mac_hi`` and ``mac_lo`` are the values little-endian loads of the
    address bytes give (what the program compares a packet load against).
    """

    endpoint_id: int
    ipv4: int
    mac_hi: int
    mac_lo: int
    ifindex: int
    identity: int

    @classmethod
    def for_endpoint(cls, endpoint: int, ifindex: int | None = None) -> EndpointConsts:
        """Deterministic constants of endpoint ``endpoint`` (0-based, < 60000)."""
        addr = bytes((10, 0, 1 + endpoint // 250, 2 + endpoint % 250))
        mac = bytes((0x0A, 0x58, 0x0A, endpoint >> 8 & 0xFF, endpoint & 0xFF, 0x2A))
        return cls(
            endpoint_id=200 + endpoint,
            ipv4=struct.unpack("<I", addr)[0],
            mac_hi=struct.unpack("<I", mac[:4])[0],
            mac_lo=struct.unpack("<H", mac[4:])[0],
            ifindex=1000 + endpoint if ifindex is None else ifindex,
            identity=0x10000 + 37 * endpoint + 5,
        )

    def value(self, name: str) -> int:
        """One constant by its rodata field name."""
        return int(getattr(self, name))


def rodata_value(consts: EndpointConsts) -> bytes:
    """The ``.rodata`` map's one value (RODATA_SIZE bytes, laid out as RODATA_FIELDS)."""
    buf = bytearray(RODATA_SIZE)
    for name, (off, size) in RODATA_FIELDS.items():
        buf[off:off + size] = consts.value(name).to_bytes(size, "little")
    return bytes(buf)


@dataclass(frozen=True)
class MapRefs:
    """What ld_imm64 map references carry: fds at load time (or placeholders)."""

    prog_array: int
    policy: int = 11
    ct4: int = 12
    ct6: int = 13
    nat: int = 14
    lb: int = 15
    metrics: int = 16
    rodata: int | None = None

    @classmethod
    def placeholders(cls, endpoint: int, rodata: bool) -> MapRefs:
        """Fake fds for building without a kernel: 11..16 for the shared maps,
        1000 + endpoint for the prog array, 5000 + endpoint for the rodata map."""
        return cls(prog_array=1000 + endpoint, rodata=5000 + endpoint if rodata else None)

    def shared(self, name: str) -> int:
        return int(getattr(self, name))


# ---------------------------------------------------------------------------------------
# a small assembler with symbolic labels


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class Asm:
    """Instructions with symbolic jump and call targets, resolved by :meth:`finish`."""

    def __init__(self) -> None:
        self.code: list[Insn] = []
        self.labels: dict[str, int] = {}
        self.refs: list[tuple[int, str, str]] = []  # (pc, label, "off" | "imm")
        self._n = 0

    def __len__(self) -> int:
        return len(self.code)

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}.{self._n}"

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"duplicate label {name}")
        self.labels[name] = len(self.code)

    def referenced(self, name: str) -> bool:
        return any(label == name for _, label, _ in self.refs)

    def emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.code.append(Insn(code, dst, src, off, _s32(imm)))

    def _ref(self, label: str, fld: str, code: int, dst: int, src: int, imm: int) -> None:
        self.refs.append((len(self.code), label, fld))
        self.emit(code, dst, src, 0, imm)

    # ALU
    def mov(self, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU64 | I.BPF_MOV | I.BPF_K, d, 0, 0, imm)

    def mov32(self, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU | I.BPF_MOV | I.BPF_K, d, 0, 0, imm)

    def movr(self, d: int, s: int) -> None:
        self.emit(I.BPF_ALU64 | I.BPF_MOV | I.BPF_X, d, s)

    def alu(self, op: int, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU64 | op | I.BPF_K, d, 0, 0, imm)

    def alu32(self, op: int, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU | op | I.BPF_K, d, 0, 0, imm)

    def alur(self, op: int, d: int, s: int) -> None:
        self.emit(I.BPF_ALU64 | op | I.BPF_X, d, s)

    def bswap16(self, d: int) -> None:
        self.emit(I.BPF_ALU | I.BPF_END | I.BPF_X, d, 0, 0, 16)

    # memory
    def ldx(self, size: int, d: int, s: int, off: int) -> None:
        self.emit(I.BPF_LDX | I.BPF_MEM | _SIZE[size], d, s, off)

    def stx(self, size: int, d: int, off: int, s: int) -> None:
        self.emit(I.BPF_STX | I.BPF_MEM | _SIZE[size], d, s, off)

    def st(self, size: int, d: int, off: int, imm: int) -> None:
        self.emit(I.BPF_ST | I.BPF_MEM | _SIZE[size], d, 0, off, imm)

    def atomic_add(self, d: int, off: int, s: int) -> None:
        self.emit(I.BPF_STX | I.BPF_ATOMIC | DW, d, s, off, I.BPF_ADD)

    def ld_map(self, d: int, fd: int) -> None:
        self.emit(I.BPF_LD | I.BPF_IMM | DW, d, I.BPF_PSEUDO_MAP_FD, 0, fd)
        self.emit(0)

    def ld_map_value(self, d: int, fd: int, off: int) -> None:
        self.emit(I.BPF_LD | I.BPF_IMM | DW, d, I.BPF_PSEUDO_MAP_VALUE, 0, fd)
        self.emit(0, 0, 0, 0, off)

    # control flow
    def jk(self, op: int, d: int, imm: int, label: str, *, w32: bool = False) -> None:
        cls = I.BPF_JMP32 if w32 else I.BPF_JMP
        self._ref(label, "off", cls | op | I.BPF_K, d, 0, imm)

    def jx(self, op: int, d: int, s: int, label: str, *, w32: bool = False) -> None:
        cls = I.BPF_JMP32 if w32 else I.BPF_JMP
        self._ref(label, "off", cls | op | I.BPF_X, d, s, 0)

    def ja(self, label: str) -> None:
        self._ref(label, "off", I.BPF_JMP | I.BPF_JA, 0, 0, 0)

    def call(self, helper: int) -> None:
        self.emit(I.BPF_JMP | I.BPF_CALL, 0, 0, 0, helper)

    def pcall(self, label: str) -> None:
        self._ref(label, "imm", I.BPF_JMP | I.BPF_CALL, 0, I.BPF_PSEUDO_CALL, 0)

    def exit(self) -> None:
        self.emit(I.BPF_JMP | I.BPF_EXIT)

    def finish(self) -> list[Insn]:
        """The code with every reference resolved (raw, pre-verifier form)."""
        out = list(self.code)
        for pc, label, fld in self.refs:
            rel = self.labels[label] - pc - 1
            old = out[pc]
            if fld == "off":
                if not -(1 << 15) <= rel < (1 << 15):
                    raise ValueError(f"jump to {label} out of range")
                out[pc] = Insn(old.code, old.dst, old.src, rel, old.imm)
            else:
                out[pc] = Insn(old.code, old.dst, old.src, old.off, rel)
        return out


# ---------------------------------------------------------------------------------------
# roles


@dataclass(frozen=True)
class Role:
    """One program of the tree: its name, slot (None: the root), what it tail-calls,
    how it ends and which blocks it favours."""

    name: str
    slot: int | None
    successors: tuple[int, ...]
    terminal: str  # "dispatch", "tail", "redirect", "pass", "notify"
    v6: bool = False
    weights: dict[str, int] = field(default_factory=dict)
    subprogs: tuple[str, ...] = ()
    size: int = 1040

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())


S = {name: i for i, name in enumerate(
    ("root", "ipv4", "ipv6", "arp", "ct4", "ct6", "pol4", "pol6", "nat4", "nat6", "lb4",
     "lb6", "icmp4", "icmp6", "frag4", "ext6", "to_ep", "to_host", "encap", "proxy",
     "ipsec", "drop_notify"))}
SLOT_DROP = S["drop_notify"]

ROLES: tuple[Role, ...] = (
    Role("cil_from_container", None, (S["ipv4"], S["ipv6"], S["arp"]), "dispatch",
         weights={"ep_src": 3, "ctx": 3, "switch": 3}, subprogs=("hdr", "metrics"),
         size=1060),
    Role("tail_ipv4", S["ipv4"], (S["frag4"], S["icmp4"], S["lb4"], S["ct4"]), "tail",
         weights={"l4": 3, "field": 4}, subprogs=("hdr", "csum")),
    Role("tail_ipv6", S["ipv6"], (S["ext6"], S["icmp6"], S["lb6"], S["ct6"]), "tail",
         v6=True, weights={"v6addr": 4, "field": 3}, subprogs=("hdr", "loop")),
    Role("tail_arp", S["arp"], (), "redirect", weights={"ep_src": 3, "switch": 4},
         subprogs=("metrics",), size=1000),
    Role("tail_ct4", S["ct4"], (S["pol4"],), "tail",
         weights={"lookup": 5, "update": 3}, subprogs=("csum",), size=1080),
    Role("tail_ct6", S["ct6"], (S["pol6"],), "tail", v6=True,
         weights={"lookup": 5, "update": 3, "v6addr": 2}, subprogs=("loop",)),
    Role("tail_pol4", S["pol4"], (S["nat4"], S["proxy"], S["to_ep"]), "tail",
         weights={"policy": 6, "cb": 2}, subprogs=("hdr", "metrics"), size=1100),
    Role("tail_pol6", S["pol6"], (S["nat6"], S["proxy"], S["to_ep"]), "tail", v6=True,
         weights={"policy": 6, "v6addr": 2}, subprogs=("metrics",)),
    Role("tail_nat4", S["nat4"], (S["to_host"], S["encap"]), "tail",
         weights={"csum": 4, "lookup": 3, "loadb": 2}, subprogs=("csum",)),
    Role("tail_nat6", S["nat6"], (S["to_host"], S["encap"]), "tail", v6=True,
         weights={"csum": 4, "lookup": 3}, subprogs=("csum", "loop")),
    Role("tail_lb4", S["lb4"], (S["ct4"],), "tail",
         weights={"lookup": 4, "prandom": 3, "loop": 1}, subprogs=("loop",), size=1020),
    Role("tail_lb6", S["lb6"], (S["ct6"],), "tail", v6=True,
         weights={"lookup": 4, "prandom": 3}, subprogs=("loop", "hdr")),
    Role("tail_icmp4", S["icmp4"], (S["to_ep"],), "pass",
         weights={"switch": 5, "csum": 2}, subprogs=("csum",), size=1000),
    Role("tail_icmp6", S["icmp6"], (S["to_ep"],), "pass", v6=True,
         weights={"switch": 5, "loadb": 2}, subprogs=("hdr",), size=1000),
    Role("tail_frag4", S["frag4"], (S["ct4"],), "tail",
         weights={"field": 5, "update": 2}, subprogs=("metrics",)),
    Role("tail_ext6", S["ext6"], (S["ct6"],), "tail", v6=True,
         weights={"loop": 2, "loadb": 3, "field": 3}, subprogs=("loop",), size=1060),
    Role("tail_to_ep", S["to_ep"], (), "redirect",
         weights={"ep_dst": 3, "ctx": 2, "cb": 2}, subprogs=("metrics", "hdr")),
    Role("tail_to_host", S["to_host"], (), "pass",
         weights={"ctx": 3, "ktime": 2}, subprogs=("metrics",), size=1000),
    Role("tail_encap", S["encap"], (), "redirect",
         weights={"loadb": 3, "csum": 2, "lookup": 2}, subprogs=("csum",)),
    Role("tail_proxy", S["proxy"], (), "pass",
         weights={"l4": 3, "policy": 2, "cb": 2}, subprogs=("hdr",)),
    Role("tail_ipsec", S["ipsec"], (S["encap"],), "tail",
         weights={"loadb": 3, "prandom": 2, "lookup": 2}, subprogs=("csum", "loop")),
    Role("tail_drop_ntfy", S["drop_notify"], (), "notify",
         weights={"cb": 4, "metrics": 3, "ktime": 2}, subprogs=("metrics", "loop"),
         size=1000),
)

_BASE_WEIGHTS = {
    "field": 6, "switch": 3, "l4": 1, "lookup": 2, "policy": 1, "update": 1, "metrics": 1,
    "loadb": 1, "csum": 1, "prandom": 1, "ktime": 1, "fill": 3, "ctx": 2, "cb": 1,
    "ep_src": 1, "ep_dst": 1, "v6addr": 0, "subcall": 2, "loop": 0,
}

_JMP_EQ_OPS = (I.BPF_JEQ, I.BPF_JEQ, I.BPF_JNE)
_JMP_ORDER_OPS = (I.BPF_JGT, I.BPF_JGE, I.BPF_JLT, I.BPF_JLE, I.BPF_JSGT, I.BPF_JSLT)
_V4_FIELDS = ((0, 4), (4, 2), (6, 4), (10, 2), (12, 2), (14, 1), (15, 1), (16, 2), (18, 2),
              (20, 2), (22, 1), (23, 1), (24, 2), (26, 4), (30, 4), (34, 2), (36, 2),
              (38, 4), (42, 4), (46, 1), (47, 1), (48, 2), (50, 2), (52, 2))
_V6_FIELDS = ((0, 4), (6, 4), (12, 2), (14, 4), (18, 2), (20, 1), (21, 1), (22, 4), (26, 4),
              (30, 4), (34, 4), (38, 4), (42, 4), (46, 4), (50, 4), (54, 2), (56, 2),
              (58, 4), (62, 4), (66, 1), (67, 1), (68, 2), (70, 4))


class _Program:
    """Generates one program of a role for one endpoint."""

    def __init__(self, role: Role, consts: EndpointConsts, maps: MapRefs) -> None:
        self.role = role
        self.consts = consts
        self.maps = maps
        self.rng = random.Random(role.seed)  # the shape depends on the role alone
        self.a = Asm()
        self.notify = role.terminal == "notify"
        self.fields = _V6_FIELDS if role.v6 else _V4_FIELDS
        weights = {**_BASE_WEIGHTS, **role.weights}
        if self.notify:  # drop-notify parses what it reports, it does not look up policy
            weights.update(policy=0, ep_src=0, ep_dst=0)
        self.kinds = [k for k, w in weights.items() for _ in range(w)]
        rng = self.rng
        codes = list(DROP_CODES)
        rng.shuffle(codes)
        self.drops = [f"drop{c}" for c in codes[:7]]
        self.drop_code = {f"drop{c}": c for c in codes[:7]}
        self.errs = [f"err{k}" for k in range(3)]
        self.tails = [f"tail{s}" for s in role.successors]
        self.exits = list(self.drops)
        if not self.notify:
            self.exits += self.tails
            if role.terminal in ("redirect", "pass") or rng.random() < 0.5:
                self.exits.append("redirect")
            self.exits.append("ok")
        self.sub_labels = [f"sub_{s}" for s in role.subprogs]

    # -- constants -----------------------------------------------------------------------

    def const(self, reg: int, name: str) -> None:
        """reg = the endpoint's constant ``name`` (an immediate, or a .rodata load)."""
        if self.maps.rodata is None:
            self.a.mov32(reg, self.consts.value(name))
            return
        off, size = RODATA_FIELDS[name]
        self.a.ld_map_value(reg, self.maps.rodata, off)
        self.a.ldx(size, reg, reg, 0)

    def cmp_const(self, op: int, reg: int, name: str, label: str) -> None:
        """if (u32)reg op constant goto label (r5 holds a .rodata constant)."""
        if self.maps.rodata is None:
            self.a.jk(op, reg, self.consts.value(name), label, w32=True)
            return
        self.const(R5, name)
        self.a.jx(op, reg, R5, label, w32=True)

    # -- small pieces ---------------------------------------------------------------------

    def exit_label(self) -> str:
        return self.rng.choice(self.exits)

    def cmp_imm(self, reg: int, bits: int, label: str) -> None:
        """A branch on an unknown ``bits``-wide value the verifier cannot decide."""
        rng = self.rng
        top = (1 << bits) - 1
        w32 = bits == 32
        if bits == 32:
            top = (1 << 31) - 1
        roll = rng.random()
        if roll < 0.15:
            self.a.jk(I.BPF_JSET, reg, 1 << rng.randrange(min(bits, 31)), label, w32=w32)
        elif roll < 0.6:
            self.a.jk(rng.choice(_JMP_EQ_OPS[:2]), reg, rng.randrange(1, top), label,
                      w32=w32)
        else:
            op = rng.choice(_JMP_ORDER_OPS)
            if op in (I.BPF_JSGT, I.BPF_JSLT) and bits == 32:
                op = I.BPF_JGT
            self.a.jk(op, reg, rng.randrange(2, top - 1), label, w32=w32)

    def pkt_load(self, reg: int) -> int:
        """reg = a packet field; returns its width in bits."""
        off, size = self.rng.choice(self.fields)
        self.a.ldx(size, reg, R7, off)
        return 8 * size

    def mix(self, reg: int) -> None:
        """Fold reg into the running flow hash r9 (an imprecise scalar)."""
        a, rng = self.a, self.rng
        op = rng.choice((I.BPF_XOR, I.BPF_ADD, I.BPF_XOR))
        a.alur(op, R9, reg)
        if rng.random() < 0.4:
            a.alu(I.BPF_MUL, R9, rng.choice((0x01000193, 0x2545F491, 0x9E3779B1)))

    def spill(self, reg: int) -> None:
        self.a.stx(8, R10, self.rng.choice(SPILLS), reg)

    # -- blocks (r6 ctx, r7 data, r8 data_end, r9 flow hash; r0-r5 free) --------------

    def b_field(self) -> None:
        rng = self.rng
        for _ in range(rng.randrange(2, 5)):
            bits = self.pkt_load(R3)
            self.cmp_imm(R3, bits, self.exit_label())
        if rng.random() < 0.5:
            self.mix(R3)

    def b_switch(self) -> None:
        a, rng = self.a, self.rng
        bits = self.pkt_load(R3)
        top = min((1 << bits) - 2, (1 << 31) - 2)
        values = rng.sample(range(1, top), rng.randrange(3, 7))
        out = a.fresh("sw")
        arms: list[tuple[str, int]] = []
        for value in values:
            if rng.random() < 0.35:
                a.jk(I.BPF_JEQ, R3, value, self.exit_label(), w32=bits == 32)
            else:
                arm = a.fresh("case")
                arms.append((arm, value))
                a.jk(I.BPF_JEQ, R3, value, arm, w32=bits == 32)
        a.ja(out)
        for arm, value in arms:
            a.label(arm)
            if rng.random() < 0.5:
                bits2 = self.pkt_load(R4)
                self.cmp_imm(R4, bits2, self.exit_label())
            a.alu(I.BPF_XOR, R9, value)
            a.ja(out)
        a.label(out)

    def b_l4(self) -> None:
        """Ports behind a variable-length IPv4 header (ihl), with its own check."""
        a, rng = self.a, self.rng
        drop = rng.choice(self.drops)
        a.ldx(1, R3, R7, 14)
        a.alu(I.BPF_AND, R3, 0x0F)
        a.alu(I.BPF_LSH, R3, 2)
        a.jk(I.BPF_JLT, R3, 20, drop)
        a.movr(R2, R7)
        a.alur(I.BPF_ADD, R2, R3)
        a.movr(R4, R2)
        a.alu(I.BPF_ADD, R4, 22)
        a.jx(I.BPF_JGT, R4, R8, drop)
        a.ldx(2, R3, R2, 14)
        self.cmp_imm(R3, 16, self.exit_label())
        a.ldx(2, R4, R2, 16)
        for _ in range(rng.randrange(1, 4)):
            a.jk(I.BPF_JEQ, R4, rng.randrange(1, 65534), self.exit_label())
        a.ldx(1, R5, R2, 21)
        a.jk(I.BPF_JSET, R5, 1 << rng.randrange(8), self.exit_label())
        self.mix(R4)

    def _key(self, key: int, size: int) -> None:
        a, rng = self.a, self.rng
        for off in range(0, size, 4):
            if rng.random() < 0.25:
                a.movr(R3, R9)
            else:
                a.ldx(4, R3, R7, rng.choice([o for o, s in self.fields if s == 4]))
            a.stx(4, R10, key + off, R3)

    def _lookup(self, map_name: str, key: int) -> None:
        a = self.a
        a.ld_map(R1, self.maps.shared(map_name))
        a.movr(R2, R10)
        a.alu(I.BPF_ADD, R2, key)
        a.call(MAP_LOOKUP)

    def _value_checks(self, value_size: int, miss: str) -> None:
        a, rng = self.a, self.rng
        for _ in range(rng.randrange(1, 4)):
            size = rng.choice((1, 2, 4))
            off = rng.randrange(0, value_size - size + 1)
            a.ldx(size, R3, R0, off)
            self.cmp_imm(R3, 8 * size, self.exit_label() if rng.random() < 0.6 else miss)

    def b_lookup(self) -> None:
        a, rng = self.a, self.rng
        name = rng.choice(("ct6", "nat", "lb") if self.role.v6 else ("ct4", "nat", "lb"))
        _, ksize, vsize, _ = MAP_SPECS[name]
        key = KEY16 if ksize == 16 else KEY8
        self._key(key, ksize)
        self._lookup(name, key)
        miss = a.fresh("miss")
        a.jk(I.BPF_JEQ, R0, 0, miss)
        self._value_checks(vsize, miss)
        a.ldx(4, R4, R0, 0)
        self.mix(R4)
        a.label(miss)

    def b_policy(self) -> None:
        a, rng = self.a, self.rng
        self.const(R3, "identity")
        a.stx(4, R10, KEY8, R3)
        a.ldx(2, R3, R7, 56 if self.role.v6 else 36)
        a.stx(2, R10, KEY8 + 4, R3)
        a.ldx(1, R3, R7, 20 if self.role.v6 else 23)
        a.stx(1, R10, KEY8 + 6, R3)
        a.st(1, R10, KEY8 + 7, rng.randrange(2))
        self._lookup("policy", KEY8)
        miss = a.fresh("nopol")
        deny = rng.choice(self.drops)
        a.jk(I.BPF_JEQ, R0, 0, deny if rng.random() < 0.5 else miss)
        a.ldx(4, R3, R0, 0)
        a.jk(I.BPF_JNE, R3, 0, deny, w32=True)
        a.ldx(2, R4, R0, 4)
        a.jk(I.BPF_JNE, R4, 0, self.tails[0] if self.tails else "ok")
        a.ldx(2, R4, R0, 6)
        self.cmp_imm(R4, 16, self.exit_label())
        if not a.referenced(miss):
            a.ja(miss)
        a.label(miss)

    def b_update(self) -> None:
        a, rng = self.a, self.rng
        name = "ct6" if self.role.v6 else "ct4"
        self._key(KEY16, 16)
        a.call(KTIME)
        a.stx(8, R10, VAL16, R0)
        a.stx(8, R10, VAL16 + 8, R9)
        a.ld_map(R1, self.maps.shared(name))
        a.movr(R2, R10)
        a.alu(I.BPF_ADD, R2, KEY16)
        a.movr(R3, R10)
        a.alu(I.BPF_ADD, R3, VAL16)
        a.mov(R4, rng.choice((0, 1)))  # BPF_ANY, BPF_NOEXIST
        a.call(MAP_UPDATE)
        a.jk(I.BPF_JSLT, R0, 0, rng.choice(self.errs))

    def b_metrics(self) -> None:
        a, rng = self.a, self.rng
        a.call(SMP_ID)
        a.alu(I.BPF_LSH, R0, 4)
        a.alu(I.BPF_ADD, R0, rng.randrange(16))
        a.stx(4, R10, KEY4, R0)
        a.ld_map(R1, self.maps.metrics)
        a.movr(R2, R10)
        a.alu(I.BPF_ADD, R2, KEY4)
        a.call(MAP_LOOKUP)
        skip = a.fresh("nomet")
        a.jk(I.BPF_JEQ, R0, 0, skip)
        a.mov(R1, 1)
        a.atomic_add(R0, 0, R1)
        a.ldx(4, R1, R6, SKB_LEN)
        a.atomic_add(R0, 8, R1)
        a.label(skip)

    def b_loadb(self) -> None:
        a, rng = self.a, self.rng
        a.movr(R1, R6)
        a.mov(R2, rng.randrange(14, 40))
        a.movr(R3, R10)
        a.alu(I.BPF_ADD, R3, BUF)
        a.mov(R4, 16)
        a.call(SKB_LOAD_BYTES)
        a.jk(I.BPF_JSLT, R0, 0, rng.choice(self.errs))
        for _ in range(rng.randrange(2, 5)):
            size = rng.choice((1, 2, 4))
            a.ldx(size, R3, R10, BUF + size * rng.randrange(0, 16 // size))  # aligned: stack
            self.cmp_imm(R3, 8 * size, self.exit_label())
        self.mix(R3)

    def b_csum(self) -> None:
        a, rng = self.a, self.rng
        a.movr(R1, R10)
        a.alu(I.BPF_ADD, R1, BUF)
        a.mov(R2, rng.choice((4, 8, 16)))
        a.movr(R3, R10)
        a.alu(I.BPF_ADD, R3, BUF2)
        a.mov(R4, rng.choice((4, 8, 16)))
        a.movr(R5, R9)
        a.call(CSUM_DIFF)
        a.jk(I.BPF_JSLT, R0, 0, rng.choice(self.errs))
        a.movr(R3, R0)
        a.alu(I.BPF_AND, R3, 0xFFFF)
        self.cmp_imm(R3, 16, self.exit_label())
        a.stx(8, R10, BUF2 + 8 * rng.randrange(4), R0)

    def b_prandom(self) -> None:
        a, rng = self.a, self.rng
        a.call(PRANDOM)
        skip = a.fresh("nosample")
        a.jk(I.BPF_JGT, R0, rng.randrange(1 << 20, 1 << 30), skip, w32=True)
        a.ldx(4, R3, R6, rng.choice(CTX_FIELDS))
        self.cmp_imm(R3, 32, self.exit_label())
        a.alu(I.BPF_ADD, R9, 1)
        a.label(skip)

    def b_ktime(self) -> None:
        a, rng = self.a, self.rng
        a.call(KTIME)
        a.movr(R3, R0)
        a.alu(I.BPF_RSH, R3, rng.choice((10, 20, 30)))
        a.alu32(I.BPF_AND, R3, 0xFFFF)
        self.cmp_imm(R3, 16, self.exit_label())
        self.spill(R0)

    def b_fill(self) -> None:
        a, rng = self.a, self.rng
        for _ in range(rng.randrange(1, 4)):
            a.ldx(8, R3, R10, rng.choice(SPILLS))
            a.alu(I.BPF_RSH, R3, rng.choice((3, 17, 32, 40)))  # a new value, no links
            a.alu32(I.BPF_AND, R3, 0xFFFF)
            self.cmp_imm(R3, 16, self.exit_label())
        a.ldx(1, R3, R7, rng.randrange(0, PKT_RANGE))
        self.mix(R3)
        self.spill(R9)

    def b_ctx(self) -> None:
        a, rng = self.a, self.rng
        for _ in range(rng.randrange(2, 4)):
            a.ldx(4, R3, R6, rng.choice(CTX_FIELDS))
            self.cmp_imm(R3, 32, self.exit_label())

    def b_cb(self) -> None:
        a, rng = self.a, self.rng
        word = rng.randrange(2, 5)
        a.ldx(4, R3, R6, SKB_CB + 4 * word)
        self.cmp_imm(R3, 32, self.exit_label())
        a.ldx(4, R4, R6, SKB_CB + 4 * rng.randrange(5))
        self.cmp_imm(R4, 32, self.exit_label())
        a.movr(R3, R9)
        a.stx(4, R6, SKB_CB + 4 * word, R3)

    def b_ep_src(self) -> None:
        a, rng = self.a, self.rng
        off = 22 if self.role.v6 else 26
        a.ldx(4, R3, R7, 6)
        self.cmp_const(I.BPF_JNE, R3, "mac_hi", rng.choice(self.drops))
        a.ldx(2, R3, R7, 10)
        self.cmp_const(I.BPF_JNE, R3, "mac_lo", rng.choice(self.drops))
        a.ldx(4, R3, R7, off)
        self.cmp_const(I.BPF_JNE, R3, "ipv4", rng.choice(self.drops))
        self.const(R3, "endpoint_id")
        a.stx(4, R6, SKB_CB + 8, R3)

    def b_ep_dst(self) -> None:
        a, rng = self.a, self.rng
        a.ldx(4, R3, R7, 38 if self.role.v6 else 30)
        self.cmp_const(I.BPF_JEQ, R3, "ipv4", "redirect" if "redirect" in self.exits
                       else rng.choice(self.drops))
        a.ldx(4, R3, R7, 0)
        self.cmp_const(I.BPF_JEQ, R3, "mac_hi", rng.choice(self.exits))
        a.ldx(4, R3, R6, SKB_MARK)
        self.cmp_const(I.BPF_JEQ, R3, "identity", rng.choice(self.exits))

    def b_v6addr(self) -> None:
        a, rng = self.a, self.rng
        base = rng.choice((22, 38))
        for word in range(4):
            a.ldx(4, R3, R7, base + 4 * word)
            a.jk(I.BPF_JNE, R3, rng.randrange(1, 1 << 31), a.fresh("v6") if False else
                 self.exit_label(), w32=True)
        self.mix(R3)

    def b_subcall(self) -> None:
        if not self.sub_labels:
            self.b_field()
            return
        self._subcall(self.rng.choice(self.sub_labels))

    def _subcall(self, label: str) -> None:
        a, rng = self.a, self.rng
        a.movr(R1, R6)
        a.mov(R2, rng.randrange(1, 64))
        a.pcall(label)
        a.jk(I.BPF_JSLT, R0, 0, rng.choice(self.errs))
        self.mix(R0)

    def b_loop(self) -> None:
        """A bounded loop: eight rounds of a hash, with a branch inside."""
        a, rng = self.a, self.rng
        top, cont = a.fresh("loop"), a.fresh("cont")
        a.mov(R4, 0)
        a.movr(R5, R9)
        a.label(top)
        a.alur(I.BPF_XOR, R5, R4)
        a.alu(I.BPF_MUL, R5, 0x9E3779B1)
        a.movr(R3, R5)
        a.alu(I.BPF_RSH, R3, 29)
        a.alu(I.BPF_AND, R3, 7)
        a.jk(I.BPF_JEQ, R3, rng.randrange(1, 7), cont)
        a.alu(I.BPF_ADD, R5, rng.randrange(1, 99))
        a.label(cont)
        a.alu(I.BPF_ADD, R4, 1)
        a.jk(I.BPF_JLT, R4, rng.choice((4, 6, 8)), top)
        a.alur(I.BPF_XOR, R9, R5)

    # -- program parts --------------------------------------------------------------------

    def prologue(self) -> None:
        a = self.a
        short = self.drops[0]
        a.movr(R6, R1)
        a.ldx(4, R7, R6, SKB_DATA)
        a.ldx(4, R8, R6, SKB_DATA_END)
        for size in (14, 34, PKT_RANGE):
            a.movr(R2, R7)
            a.alu(I.BPF_ADD, R2, size)
            a.jx(I.BPF_JGT, R2, R8, short)
        a.ldx(4, R9, R6, SKB_HASH)
        a.call(KTIME)
        a.alur(I.BPF_XOR, R9, R0)
        for k, off in enumerate(FRAME_SLOTS):
            a.stx(8, R10, off, R0 if k % 2 else R9)
        if self.notify:
            for word in range(3):
                a.ldx(4, R3, R6, SKB_CB + 4 * word)
                a.stx(8, R10, SPILLS[word], R3)

    def body(self, budget: int) -> None:
        blocks: dict[str, Callable[[], None]] = {
            name[2:]: getattr(self, name) for name in dir(self) if name.startswith("b_")
        }
        # every subprogram is called at least once, spread over the body
        pending = list(self.sub_labels)
        every = budget // (len(pending) + 1) if pending else 0
        while len(self.a) < budget:
            if pending and len(self.a) >= every * (len(self.sub_labels) - len(pending) + 1):
                self._subcall(pending.pop(0))
                continue
            blocks[self.rng.choice(self.kinds)]()
        for label in pending:
            self._subcall(label)

    def terminal(self) -> None:
        a, rng, role = self.a, self.rng, self.role
        if role.terminal == "dispatch":
            a.ldx(2, R3, R7, 12)
            for ethertype, slot in zip((0x0008, 0xDD86, 0x0608), role.successors, strict=True):
                a.jk(I.BPF_JEQ, R3, ethertype, f"tail{slot}")
            a.ja(self.drops[1])
        elif role.terminal == "tail":
            for slot in role.successors[:-1]:
                a.ldx(1, R3, R7, rng.randrange(14, PKT_RANGE))
                self.cmp_imm(R3, 8, f"tail{slot}")
            a.ja(f"tail{role.successors[-1]}")
        elif role.terminal == "redirect":
            a.ldx(4, R3, R6, SKB_MARK)
            a.jk(I.BPF_JSET, R3, 0x200, "ok")
            a.ja("redirect")
        elif role.terminal == "pass":
            a.ldx(4, R3, R6, SKB_PRIORITY)
            a.jk(I.BPF_JGT, R3, 6, "redirect")
            a.ja("ok")
        else:  # notify: report by the code in cb[0]
            a.ldx(4, R3, R6, SKB_CB)
            for code in OK_CODES:
                a.jk(I.BPF_JEQ, R3, code, "ok", w32=True)
            a.ldx(4, R4, R6, SKB_CB + 4)
            a.jk(I.BPF_JEQ, R4, 0, "ok", w32=True)
            a.mov(R0, TC_ACT_SHOT)
            a.exit()

    def _to_drop_notify(self) -> None:
        a = self.a
        a.movr(R1, R6)
        a.ld_map(R2, self.maps.prog_array)
        a.mov(R3, SLOT_DROP)
        a.call(TAIL_CALL)
        a.mov(R0, TC_ACT_SHOT)
        a.exit()

    def handlers(self) -> None:
        a = self.a
        for label in self.drops:
            if not a.referenced(label):
                continue
            a.label(label)
            if self.notify:
                a.mov(R0, TC_ACT_SHOT)
                a.exit()
                continue
            a.mov32(R2, self.drop_code[label])
            a.stx(4, R6, SKB_CB, R2)
            self.const(R2, "endpoint_id")
            a.stx(4, R6, SKB_CB + 4, R2)
            self._to_drop_notify()
        for k, label in enumerate(self.errs):
            if not a.referenced(label):
                continue
            a.label(label)  # r0: a helper's (or subprogram's) negative error
            if self.notify:
                a.mov(R0, TC_ACT_SHOT)
                a.exit()
                continue
            a.stx(4, R6, SKB_CB, R0)
            a.mov32(R2, 0x100 + k)
            a.stx(4, R6, SKB_CB + 4, R2)
            self._to_drop_notify()
        for label in self.tails:
            if not a.referenced(label):
                continue
            a.label(label)
            a.movr(R1, R6)
            a.ld_map(R2, self.maps.prog_array)
            a.mov(R3, int(label[4:]))
            a.call(TAIL_CALL)
            a.mov32(R2, DROP_MISSED_TAIL_CALL)
            a.stx(4, R6, SKB_CB, R2)
            self._to_drop_notify()
        if a.referenced("redirect"):
            a.label("redirect")
            self.const(R1, "ifindex")
            a.mov(R2, 0)
            a.call(REDIRECT)
            a.exit()
        if a.referenced("ok"):
            a.label("ok")
            a.mov(R0, TC_ACT_OK)
            a.exit()

    # -- subprograms (r1 = ctx, r2 = a small unsigned argument) ---------------------------

    def sub_hdr(self) -> None:
        """Re-parse from the context; return a header word or -EINVAL / -ENOENT."""
        a, rng = self.a, self.rng
        bad, missing = a.fresh("einval"), a.fresh("enoent")
        a.movr(R6, R1)
        a.ldx(4, R7, R6, SKB_DATA)
        a.ldx(4, R8, R6, SKB_DATA_END)
        a.movr(R3, R7)
        a.alu(I.BPF_ADD, R3, 54)
        a.jx(I.BPF_JGT, R3, R8, bad)
        for _ in range(rng.randrange(5, 9)):
            size = rng.choice((1, 2, 4))
            a.ldx(size, R3, R7, rng.randrange(0, 55 - size))
            self.cmp_imm(R3, 8 * size, rng.choice((bad, missing)))
        a.ldx(4, R0, R7, 26)
        a.alur(I.BPF_XOR, R0, R2)
        a.exit()
        a.label(bad)
        a.mov(R0, -22)
        a.exit()
        a.label(missing)
        a.mov(R0, -2)
        a.exit()

    def sub_csum(self) -> None:
        """bpf_skb_load_bytes then bpf_csum_diff on its own frame; errors are returned."""
        a, rng = self.a, self.rng
        out = a.fresh("ret")
        a.movr(R6, R1)
        a.movr(R1, R6)
        a.mov(R2, rng.randrange(14, 40))
        a.movr(R3, R10)
        a.alu(I.BPF_ADD, R3, -32)
        a.mov(R4, 20)
        a.call(SKB_LOAD_BYTES)
        a.jk(I.BPF_JSLT, R0, 0, out)
        for _ in range(rng.randrange(2, 5)):
            size = rng.choice((1, 2, 4))
            a.ldx(size, R3, R10, -32 + size * rng.randrange(0, 20 // size))
            self.cmp_imm(R3, 8 * size, out)
        a.movr(R1, R10)
        a.alu(I.BPF_ADD, R1, -32)
        a.mov(R2, 20)
        a.mov(R3, 0)
        a.mov(R4, 0)
        a.mov(R5, 0)
        a.call(CSUM_DIFF)
        a.label(out)
        a.exit()

    def sub_loop(self) -> None:
        """A bounded loop over the argument (the verifier walks each round)."""
        a, rng = self.a, self.rng
        top, cont = a.fresh("sloop"), a.fresh("scont")
        a.movr(R0, R2)
        a.mov(R4, 0)
        a.label(top)
        a.alur(I.BPF_ADD, R0, R4)
        a.alu(I.BPF_MUL, R0, 0x01000193)
        a.movr(R3, R0)
        a.alu(I.BPF_RSH, R3, 27)
        a.alu(I.BPF_AND, R3, 15)
        a.jk(I.BPF_JGT, R3, rng.randrange(2, 13), cont)
        a.alu(I.BPF_XOR, R0, rng.randrange(1, 1 << 16))
        a.label(cont)
        a.alu(I.BPF_ADD, R4, 1)
        a.jk(I.BPF_JLT, R4, rng.choice((6, 8, 10)), top)
        a.alu32(I.BPF_AND, R0, 0x7FFFFFFF)
        a.exit()

    def sub_metrics(self) -> None:
        """Per-CPU-ish counters in the shared metrics array; returns 0."""
        a = self.a
        out = a.fresh("mout")
        a.movr(R6, R1)
        a.movr(R7, R2)
        a.call(SMP_ID)
        a.alu(I.BPF_LSH, R0, 6)
        a.alur(I.BPF_ADD, R0, R7)
        a.stx(4, R10, -8, R0)
        a.ld_map(R1, self.maps.metrics)
        a.movr(R2, R10)
        a.alu(I.BPF_ADD, R2, -8)
        a.call(MAP_LOOKUP)
        a.jk(I.BPF_JEQ, R0, 0, out)
        a.mov(R1, 1)
        a.atomic_add(R0, 0, R1)
        a.ldx(4, R1, R6, SKB_LEN)
        a.atomic_add(R0, 8, R1)
        a.label(out)
        a.mov(R0, 0)
        a.exit()

    def build(self) -> list[Insn]:
        # the size of what follows the body does not depend on the constants, only on
        # the role, so the budget (hence the shape) is the same for every endpoint
        tail_estimate = 95 + 22 * len(self.sub_labels)
        self.prologue()
        self.body(self.role.size - tail_estimate)
        self.terminal()
        self.handlers()
        for label in self.sub_labels:
            self.a.label(label)
            getattr(self, label)()
        return self.a.finish()


def slot_of(name: str) -> int | None:
    """The prog-array slot of a program of the tree (None for the root)."""
    for role in ROLES:
        if role.name == name:
            return role.slot
    raise KeyError(name)


def build_tree_code(
    endpoint: int,
    rodata: bool,
    *,
    consts: EndpointConsts | None = None,
    maps: MapRefs | None = None,
) -> list[tuple[str, list[Insn]]]:
    """One endpoint's tree as (program name, raw instructions), root first, then slots
    1..21 in order (:func:`slot_of` gives a name's slot). No kernel needed.

    ``consts`` default to :meth:`EndpointConsts.for_endpoint`; ``maps`` to
    :meth:`MapRefs.placeholders` (fake fds). With ``rodata`` the constants are read
    from ``maps.rodata`` (a one-element array holding :func:`rodata_value`)."""
    consts = consts or EndpointConsts.for_endpoint(endpoint)
    maps = maps or MapRefs.placeholders(endpoint, rodata)
    if rodata and maps.rodata is None:
        raise ValueError("rodata=True needs maps.rodata")
    if not rodata and maps.rodata is not None:
        maps = MapRefs(**{**maps.__dict__, "rodata": None})
    return [(role.name, _Program(role, consts, maps).build()) for role in ROLES]


# ---------------------------------------------------------------------------------------
# measuring code (raw or xlated)


def conditional_jumps(code: Sequence[Insn]) -> int:
    """Conditional jumps (JMP/JMP32 other than ja, call, exit, may_goto)."""
    count = 0
    for insn in code:
        cls = insn.code & 0x07
        if cls in (I.BPF_JMP, I.BPF_JMP32) and (insn.code & 0xF0) not in (
            I.BPF_JA, I.BPF_CALL, I.BPF_EXIT, I.BPF_JCOND
        ):
            count += 1
    return count


def branch_density(programs: Iterable[Sequence[Insn]]) -> float:
    """Conditional jumps per instruction over several programs."""
    jumps = total = 0
    for code in programs:
        jumps += conditional_jumps(code)
        total += len(code)
    return jumps / total if total else 0.0
