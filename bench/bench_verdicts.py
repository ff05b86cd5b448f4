"""Benchmark of the verdict analysis alone (no kernel access), on two trees side by side.

- *endpoint tree* (the target, issue 12): one endpoint's tree of ``fleet_tree`` (the
  tree bench_fleet_endpoints loads into the kernel): 22 programs, about 24,000
  instructions, a conditional jump every 4-5 instructions like real parsing code,
  spills, helper calls whose errors are compared and returned, drop codes carried in
  cb[] into a drop-notify tail call.
- *straight tree* (the tree of earlier rounds): a root that parses the packet and
  tail-calls into ten programs with bounds checks, map lookups, helper calls, spills,
  subprograms (one with a bounded loop) and verdicts OK, SHOT, REDIRECT and UNSPEC; its
  code runs almost straight through (about one interpreted step per instruction).

Beside them, in the same run, the baseline commit's engine (bench/BASELINE, checked out
by ``make bench``) analyses the same two trees.

Every repetition is a fresh ``closure.analyse`` with the scalar memo tables emptied
first (``analysis.memo``: no memo survives it, and it reads no disk cache). Prints
instructions per second and interpreted steps per instruction of each; the target is
>= 1,000,000 instructions per second on the endpoint tree.

    python bench/bench_verdicts.py [--insns N] [--repeat K]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
# --engine-from DIR: the engine of another checkout (the baseline, bench/baseline.py)
# analyses the same trees; it must be on the path before tcaudit is first imported
ENGINE = HERE.parent
if "--engine-from" in sys.argv:
    ENGINE = Path(sys.argv[sys.argv.index("--engine-from") + 1])
sys.path.insert(0, str(ENGINE))
sys.path.insert(0, str(HERE))

import baseline  # noqa: E402

from tcaudit.analysis import insns as I  # noqa: E402
from tcaudit.analysis.closure import ProgramCode, analyse  # noqa: E402
from tcaudit.analysis.insns import Insn  # noqa: E402

try:
    from tcaudit.analysis import memo

    forget = memo.forget
except ImportError:  # a baseline engine before the memo tables
    def forget() -> None:
        pass

PROG_ARRAY = 167
CT_MAP = 300
POLICY_MAP = 301
HELPERS = {1: "bpf_map_lookup_elem", 2: "bpf_map_update_elem", 5: "bpf_ktime_get_ns",
           7: "bpf_user_rnd_u32", 8: "bpf_get_smp_processor_id", 12: "bpf_tail_call",
           23: "bpf_redirect", 26: "bpf_skb_load_bytes", 28: "bpf_csum_diff",
           152: "bpf_redirect_neigh"}
TARGET = 1_000_000


class Emitter:
    """Appends instructions; forward jumps are patched when their label is placed."""

    def __init__(self) -> None:
        self.code: list[Insn] = []
        self.fixups: dict[str, list[int]] = {}
        self.labels: dict[str, int] = {}
        self.n = 0

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)
        for pc in self.fixups.pop(name, []):
            old = self.code[pc]
            rel = len(self.code) - pc - 1
            if old.src == I.BPF_PSEUDO_CALL and old.code == I.BPF_JMP | I.BPF_CALL:
                self.code[pc] = Insn(old.code, old.dst, old.src, 0, rel)
            else:
                self.code[pc] = Insn(old.code, old.dst, old.src, rel, old.imm)

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.code.append(Insn(code, dst, src, off, imm))

    def to(self, label: str, code: int, dst: int = 0, src: int = 0, imm: int = 0) -> None:
        if label in self.labels:  # backward
            rel = self.labels[label] - len(self.code) - 1
            if code == I.BPF_JMP | I.BPF_CALL:
                self.emit(code, dst, src, 0, rel)
            else:
                self.emit(code, dst, src, rel, imm)
            return
        self.fixups.setdefault(label, []).append(len(self.code))
        self.emit(code, dst, src, 0, imm)

    # shorthands
    def mov(self, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU64 | I.BPF_MOV | I.BPF_K, d, 0, 0, imm)

    def movr(self, d: int, s: int) -> None:
        self.emit(I.BPF_ALU64 | I.BPF_MOV | I.BPF_X, d, s)

    def alu(self, op: int, d: int, imm: int) -> None:
        self.emit(I.BPF_ALU64 | op | I.BPF_K, d, 0, 0, imm)

    def alur(self, op: int, d: int, s: int) -> None:
        self.emit(I.BPF_ALU64 | op | I.BPF_X, d, s)

    def ldx(self, size: int, d: int, s: int, off: int) -> None:
        self.emit(I.BPF_LDX | I.BPF_MEM | size, d, s, off)

    def stx(self, size: int, d: int, off: int, s: int) -> None:
        self.emit(I.BPF_STX | I.BPF_MEM | size, d, s, off)

    def st(self, size: int, d: int, off: int, imm: int) -> None:
        self.emit(I.BPF_ST | I.BPF_MEM | size, d, 0, off, imm)

    def jk(self, op: int, d: int, imm: int, label: str) -> None:
        self.to(label, I.BPF_JMP | op | I.BPF_K, d, 0, imm)

    def jx(self, op: int, d: int, s: int, label: str) -> None:
        self.to(label, I.BPF_JMP | op | I.BPF_X, d, s)

    def call(self, imm: int) -> None:
        self.emit(I.BPF_JMP | I.BPF_CALL, 0, 0, 0, imm)

    def pcall(self, label: str) -> None:
        self.to(label, I.BPF_JMP | I.BPF_CALL, 0, I.BPF_PSEUDO_CALL)

    def ld_map(self, d: int, map_id: int) -> None:
        self.emit(I.BPF_LD | I.BPF_IMM | I.BPF_DW, d, I.BPF_PSEUDO_MAP_FD, 0, map_id)
        self.emit(0)

    def exit(self) -> None:
        self.emit(I.BPF_JMP | I.BPF_EXIT)


W, H, B, DW = I.BPF_W, I.BPF_H, I.BPF_B, I.BPF_DW


def block(e: Emitter, rng: random.Random, drop: str) -> None:
    """One chunk of parsing/policy code (r6 = ctx, r7 = data, r8 = data_end,
    r9 = verdict so far)."""
    kind = rng.randrange(8)
    if kind == 0:  # bounds check
        e.movr(2, 7)
        e.alu(I.BPF_ADD, 2, rng.choice((14, 34, 54, 74)))
        e.jx(I.BPF_JGT, 2, 8, drop)
        e.ldx(rng.choice((B, H, W)), 3, 7, rng.randrange(0, 60))
        e.stx(DW, 10, -8 * rng.randrange(2, 12), 3)
    elif kind == 1:  # map lookup with a key on the stack
        e.ldx(W, 2, 6, 4 * rng.randrange(0, 20))
        e.stx(W, 10, -64, 2)
        e.ld_map(1, rng.choice((CT_MAP, POLICY_MAP)))
        e.movr(2, 10)
        e.alu(I.BPF_ADD, 2, -64)
        e.call(1)
        skip = e.fresh("miss")
        e.jk(I.BPF_JEQ, 0, 0, skip)
        e.ldx(W, 3, 0, 0)
        e.alu(I.BPF_AND, 3, 0xFF)
        e.stx(DW, 10, -8 * rng.randrange(2, 12), 3)
        e.label(skip)
    elif kind == 2:  # switch on a packet byte, each case sets a verdict or moves on
        e.ldx(B, 3, 7, rng.randrange(0, 40))
        out = e.fresh("sw")
        for case in range(rng.randrange(2, 5)):
            nxt = e.fresh("case")
            e.jk(I.BPF_JNE, 3, case + rng.randrange(0, 50), nxt)
            e.mov(9, rng.choice((0, 0, 2, -1)))
            e.alu(I.BPF_ADD, 4, case)
            e.to(out, I.BPF_JMP | I.BPF_JA)
            e.label(nxt)
        e.label(out)
    elif kind == 3:  # arithmetic on header fields
        e.ldx(H, 3, 7, 12)
        e.emit(I.BPF_ALU | I.BPF_END | I.BPF_X, 3, 0, 0, 16)
        e.alu(I.BPF_LSH, 3, 8)
        e.alur(I.BPF_XOR, 3, 4)
        e.alu(I.BPF_RSH, 3, 3)
        e.movr(4, 3)
        e.alu(I.BPF_MUL, 4, 2654435761)
    elif kind == 4:  # helper whose value is ignored
        e.call(rng.choice((5, 7)))
        e.stx(DW, 10, -8 * rng.randrange(2, 12), 0)
    elif kind == 5:  # fill and compare
        e.ldx(DW, 3, 10, -8 * rng.randrange(2, 12))
        lbl = e.fresh("f")
        e.jk(rng.choice((I.BPF_JGT, I.BPF_JLT, I.BPF_JSGT)), 3, rng.randrange(100), lbl)
        e.mov(9, rng.choice((0, 2)))
        e.label(lbl)
    elif kind == 6:  # early drop on a flag
        e.ldx(W, 3, 6, 8)
        e.jk(I.BPF_JSET, 3, 1 << rng.randrange(12), drop)
    else:  # reload data pointers after a helper may have changed the packet
        e.ldx(W, 7, 6, 76)
        e.ldx(W, 8, 6, 80)


def build_program(
    rng: random.Random, size: int, *, role: str, prog_id: int, slots: int
) -> ProgramCode:
    e = Emitter()
    e.movr(6, 1)
    e.mov(9, -1)  # TC_ACT_UNSPEC unless decided otherwise
    e.ldx(W, 7, 6, 76)
    e.ldx(W, 8, 6, 80)
    for slot in range(2, 12):
        e.st(DW, 10, -8 * slot, 0)
    drop = "drop"
    while len(e.code) < size - 60:
        block(e, rng, drop)
        if rng.randrange(12) == 0:
            e.movr(1, 6)
            e.pcall("sub_csum")
            e.jk(I.BPF_JSLT, 0, 0, drop)
        if rng.randrange(20) == 0:
            e.movr(1, 10)
            e.alu(I.BPF_ADD, 1, -96)
            e.pcall("sub_walk")
    if role == "root":
        # dispatch by protocol: constant slot indexes, SHOT when the tail call fails
        e.ldx(W, 3, 6, 16)
        for slot in range(slots):
            nxt = e.fresh("proto")
            e.jk(I.BPF_JNE, 3, 0x800 + slot, nxt)
            e.movr(1, 6)
            e.ld_map(2, PROG_ARRAY)
            e.mov(3, slot)
            e.call(12)
            e.mov(0, 2)
            e.exit()
            e.label(nxt)
        e.movr(0, 9)
        e.exit()
    elif role == "redirect":
        e.mov(1, 4)
        e.mov(2, 0)
        e.call(23)
        e.exit()
    elif role == "policy":
        e.ldx(W, 3, 6, 0)
        e.alu(I.BPF_AND, 3, 3)
        e.movr(1, 6)
        e.ld_map(2, PROG_ARRAY)
        e.call(12)  # variable index: any filled slot
        e.mov(0, 2)
        e.exit()
    else:
        e.movr(0, 9)
        e.exit()
    e.label(drop)
    e.mov(0, 2)
    e.exit()
    # subprogram: checksum-like, returns 0 or a negative error
    e.label("sub_csum")
    e.ldx(W, 2, 1, 76)
    e.ldx(W, 3, 1, 80)
    e.movr(4, 2)
    e.alu(I.BPF_ADD, 4, 20)
    bad = e.fresh("bad")
    e.jx(I.BPF_JGT, 4, 3, bad)
    e.ldx(H, 5, 2, 10)
    e.alur(I.BPF_XOR, 5, 5)
    e.mov(0, 0)
    e.exit()
    e.label(bad)
    e.mov(0, -22)
    e.exit()
    # subprogram with a bounded loop writing the caller's stack
    e.label("sub_walk")
    e.mov(2, 0)
    e.label("walk")
    e.stx(DW, 1, 0, 2)
    e.alu(I.BPF_ADD, 2, 1)
    e.jk(I.BPF_JLT, 2, 8, "walk")
    e.mov(0, 0)
    e.exit()
    starts = (0, e.labels["sub_csum"], e.labels["sub_walk"])
    assert not e.fixups, e.fixups
    return ProgramCode(prog_id, role, tuple(e.code), starts)


class Source:
    def __init__(self, programs: Mapping[int, ProgramCode], arrays: Mapping[int, dict[int, int]]):
        self.programs = programs
        self.arrays = arrays

    def helper_name(self, imm: int) -> str | None:
        return HELPERS.get(imm)

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        return self.arrays.get(map_id)

    def program(self, prog_id: int) -> ProgramCode | None:
        return self.programs.get(prog_id)


def build_tree(total: int, seed: int = 1) -> tuple[ProgramCode, Source, int]:
    rng = random.Random(seed)
    n_targets = 10
    per = total // (n_targets + 1)
    roles = ["redirect", "policy", "plain", "plain", "redirect", "plain", "policy", "plain",
             "plain", "redirect"]
    programs: dict[int, ProgramCode] = {}
    root = build_program(rng, per, role="root", prog_id=1000, slots=n_targets)
    programs[1000] = root
    slots: dict[int, int] = {}
    for i in range(n_targets):
        pid = 1001 + i
        programs[pid] = build_program(rng, per, role=roles[i], prog_id=pid, slots=0)
        slots[i] = pid
    count = sum(len(p.insns) for p in programs.values())
    return root, Source(programs, {PROG_ARRAY: slots}), count


def build_endpoint_tree(endpoint: int = 0) -> tuple[ProgramCode, Source, int]:
    """One endpoint's fleet_tree tree; map fds of the placeholders stand for map ids."""
    import fleet_tree as F

    programs: dict[int, ProgramCode] = {}
    slots: dict[int, int] = {}
    maps = F.MapRefs.placeholders(endpoint, rodata=False)
    for k, (name, code) in enumerate(F.build_tree_code(endpoint, False, maps=maps)):
        starts = {0} | {pc + ins.imm + 1 for pc, ins in enumerate(code)
                        if ins.code == I.BPF_JMP | I.BPF_CALL and ins.src == I.BPF_PSEUDO_CALL}
        refs = tuple(sorted({ins.imm for ins in code
                             if ins.code == I.BPF_LD | I.BPF_IMM | I.BPF_DW and ins.src == 1}))
        programs[2000 + k] = ProgramCode(2000 + k, name, tuple(code), tuple(sorted(starts)),
                                         refs)
        slot = F.slot_of(name)
        if slot is not None:
            slots[slot] = 2000 + k
    count = sum(len(p.insns) for p in programs.values())
    return programs[2000], Source(programs, {maps.prog_array: slots}), count


def measure(label: str, root: ProgramCode, source: Source, count: int,
            repeat: int) -> float:
    times = []
    result = analyse(root, source)
    for _ in range(repeat):
        forget()
        t0 = time.perf_counter()
        result = analyse(root, source)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    possible = sorted(result.possible) if result.possible is not None else None
    print(f"{label}: {len(source.programs)} programs, {count} instructions, "
          f"possible={possible}")
    print(f"  {result.steps / count:.2f} interpreted steps per instruction; "
          f"median {med * 1000:.0f} ms, best {min(times) * 1000:.0f} ms; "
          f"{count / med:,.0f} insns/s")
    return count / med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--insns", type=int, default=12_000, help="size of the straight tree")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--engine-from", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    label = "" if args.engine_from is None else "[baseline engine] "
    speed = measure(f"{label}endpoint tree", *build_endpoint_tree(), repeat=args.repeat)
    measure(f"{label}straight tree (the earlier rounds' tree)", *build_tree(args.insns),
            repeat=args.repeat)
    if args.engine_from is not None:
        return 0
    base = baseline.tree()
    if base is None:
        print("(no baseline checkout: run through make bench to time it beside this one)")
    else:
        print(f"\nthe same trees, the baseline's engine ({baseline.commit()[:12]}):",
              flush=True)
        subprocess.run([sys.executable, __file__, "--engine-from", str(base),
                        "--insns", str(args.insns), "--repeat", str(args.repeat)],
                       check=True)
    met = speed >= TARGET
    print(f"\n{'PASS' if met else 'FAIL'}  analysis >= {TARGET:,} insns/s on one core on the "
          f"endpoint tree ({speed:,.0f}; {speed / TARGET:.0%} of the target)")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
