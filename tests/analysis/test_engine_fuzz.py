"""Robustness fuzzing of the verdict engine.

Whatever instructions it is given, ``closure.analyse`` must return a
well-formed :class:`Analysis` and never raise: (a) completely random
instruction streams (random 8-byte records, and records built from valid
opcodes with random registers 0-15, offsets and immediates, with random
func_starts) and (b) mutations of valid generated programs (opcode bits,
registers incl. r11 and the invalid r12-r15, offsets, immediates,
truncations, jumps out of range, split ld_imm64 pairs, and the encodings
real xlated code contains: may_goto, cpu-v4 sdiv/smod and movsx, ldsx,
kfunc calls, BPF_PSEUDO_FUNC, BPF_NOSPEC, pseudo calls, tail calls).
Prog arrays of the fake CodeSource point at other random programs (some
unreadable, some cycles back to the root).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tcaudit.analysis import insns as I
from tcaudit.analysis.closure import Analysis, ProgramCode, analyse
from tcaudit.analysis.insns import Insn, decode, format_insn
from tests.analysis.test_verdicts_props import FP_HELPERS, Tree, fp_trees, listing, trees
from tests.bpfasm import HELPERS, FakeSource

BUDGET = 20_000
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
MAP_IDS = (0, 1, 2, 3, 5, 7, 0xFFFFFFFF)
PIDS = (1, 2, 3, 4, 5, 6, 100)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
    ],
)

_PACK = struct.Struct("<BBhi")


def _is_valid_code(code: int) -> bool:
    pair = [Insn(code, 0, 0, 0, 0), Insn(0, 0, 0, 0, 0)]
    try:
        return "invalid" not in format_insn(pair, 0)
    except Exception:  # the disassembler is not under test here
        return False


VALID_CODES = tuple(c for c in range(256) if _is_valid_code(c))
EXTRA_CODES = (
    0xC2,  # BPF_ST | BPF_NOSPEC
    0xF5,  # BPF_JMP | BPF_TAIL_CALL (kernel-internal)
    0xE5,  # BPF_JMP | BPF_JCOND (may_goto)
    0x99,  # ldsx u64: invalid
    0xA1, 0xA2, 0xA3, 0x21, 0x41,  # kernel-internal probe / arena modes
    0xE3, 0xE2,  # probe atomic
    0x06,  # gotol
)
ATOMIC_IMMS = (
    I.BPF_ADD, I.BPF_OR, I.BPF_AND, I.BPF_XOR,
    I.BPF_ADD | I.BPF_FETCH, I.BPF_OR | I.BPF_FETCH, I.BPF_AND | I.BPF_FETCH,
    I.BPF_XOR | I.BPF_FETCH, I.BPF_XCHG, I.BPF_CMPXCHG, I.BPF_LOAD_ACQ, I.BPF_STORE_REL,
)

regs16 = st.integers(0, 15)
regs_ok = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
off16 = st.one_of(
    st.integers(-8, 8), st.sampled_from([1, 8, 16, 32, -(1 << 15), (1 << 15) - 1]),
    st.integers(-(1 << 15), (1 << 15) - 1),
)
imm32 = st.one_of(
    st.integers(-8, 16),
    st.sampled_from([12, 23, 26, 64, 0x7FFFFFFF, -(1 << 31), *ATOMIC_IMMS]),
    st.integers(S32_MIN, S32_MAX),
)


def _rec(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    off = ((off + (1 << 15)) & 0xFFFF) - (1 << 15)
    imm = ((imm + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return _PACK.pack(code & 0xFF, ((src & 15) << 4) | (dst & 15), off, imm)


@st.composite
def special_insns(draw: st.DrawFn, n: int) -> list[bytes]:
    """One to two records of the encodings real xlated code (and the kernel) uses."""
    kind = draw(st.sampled_from([
        "may_goto", "sdiv", "movsx", "ldsx", "kfunc", "pseudo_func", "nospec", "pcall",
        "tail", "ld_map", "ld_map_value", "exit", "atomic", "gotol", "ld_btf", "ja",
    ]))
    rel = draw(st.one_of(st.integers(-n - 2, n + 2), off16))
    d, s = draw(regs16), draw(regs16)
    if kind == "may_goto":
        return [_rec(0xE5, 0, draw(st.sampled_from([0, 0, 1])), rel, 0)]
    if kind == "sdiv":
        code = draw(st.sampled_from([0x3F, 0x9F, 0x3C, 0x9C, 0x37, 0x97, 0x34, 0x94]))
        return [_rec(code, d, s, draw(st.sampled_from([1, 1, 0, 2, -1])), draw(imm32))]
    if kind == "movsx":
        code = draw(st.sampled_from([0xBF, 0xBC]))
        return [_rec(code, d, s, draw(st.sampled_from([8, 16, 32, 1, 64, 7])), draw(imm32))]
    if kind == "ldsx":
        code = draw(st.sampled_from([0x81, 0x89, 0x91, 0x99]))
        return [_rec(code, d, s, draw(off16), 0)]
    if kind == "kfunc":
        return [_rec(0x85, 0, 2, draw(off16), draw(imm32))]
    if kind == "pseudo_func":
        return [_rec(0x18, d, 4, 0, rel), _rec(0, 0, 0, 0, 0)]
    if kind == "nospec":
        return [_rec(0xC2, draw(st.sampled_from([0, d])), 0, 0, 0)]
    if kind == "pcall":
        jit = draw(st.booleans())
        return [_rec(0x85, 0, 1, rel if jit else 0, draw(st.integers(0, 3)) if jit else rel)]
    if kind == "tail":
        return [_rec(0x85, 0, 0, 0, 12)]
    if kind == "ld_map":
        return [_rec(0x18, d, 1, 0, draw(st.sampled_from(MAP_IDS))), _rec(0, 0, 0, 0, 0)]
    if kind == "ld_map_value":
        return [_rec(0x18, d, 2, 0, draw(st.sampled_from(MAP_IDS))),
                _rec(0, 0, 0, 0, draw(st.integers(-4, 4096)))]
    if kind == "ld_btf":
        return [_rec(0x18, d, draw(st.integers(3, 15)), 0, draw(imm32)),
                _rec(0, 0, 0, 0, draw(imm32))]
    if kind == "exit":
        return [_rec(0x95, 0, 0, 0, 0)]
    if kind == "atomic":
        code = draw(st.sampled_from([0xC3, 0xDB, 0xD3, 0xCB]))
        return [_rec(code, d, s, draw(off16), draw(st.sampled_from(ATOMIC_IMMS)))]
    if kind == "gotol":
        return [_rec(0x06, 0, 0, 0, rel)]
    return [_rec(0x05, 0, 0, rel, 0)]


@st.composite
def raw_streams(draw: st.DrawFn, max_len: int = 40) -> tuple[Insn, ...]:
    """Random instruction records, decoded with insns.decode."""
    how = draw(st.integers(0, 2))
    if how == 0:  # completely random bytes
        raw = draw(st.binary(max_size=8 * max_len))
        return decode(raw[: len(raw) - len(raw) % 8])
    n = draw(st.integers(0, max_len))
    recs: list[bytes] = []
    while len(recs) < n:
        pick = draw(st.integers(0, 9))
        if pick == 0:
            recs.append(draw(st.binary(min_size=8, max_size=8)))
        elif pick <= 2:
            recs += draw(special_insns(n))
        else:
            code = draw(st.sampled_from(VALID_CODES + EXTRA_CODES))
            reg = regs16 if how == 1 else regs_ok
            cls = code & 7
            if cls in (I.BPF_JMP, I.BPF_JMP32):
                off = draw(st.one_of(st.integers(-n - 2, n + 2), off16))
            else:
                off = draw(off16)
            imm = draw(st.sampled_from(ATOMIC_IMMS)) if code in (0xC3, 0xDB) else draw(imm32)
            recs.append(_rec(code, draw(reg), draw(reg), off, imm))
    return decode(b"".join(recs))


@st.composite
def func_starts(draw: st.DrawFn, n: int) -> tuple[int, ...]:
    starts = draw(st.lists(st.integers(-3, n + 3), max_size=5))
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return tuple(starts)  # any order, duplicates, out of range
    if shape == 1:
        return ()
    return tuple(sorted({0, *starts}))


@st.composite
def random_programs(draw: st.DrawFn, prog_id: int | None, max_len: int = 40) -> ProgramCode:
    code = draw(raw_streams(max_len))
    return ProgramCode(prog_id, f"p{prog_id}", code, draw(func_starts(len(code))))


@st.composite
def sources(draw: st.DrawFn, programs: Mapping[int, ProgramCode]) -> FakeSource:
    """Prog arrays whose slots point at the given programs, unreadable ids and the root."""
    arrays: dict[int, dict[int, int]] = {}
    for mid in draw(st.lists(st.sampled_from(MAP_IDS), max_size=4, unique=True)):
        arrays[mid] = draw(st.dictionaries(
            st.one_of(st.integers(0, 4), st.integers(0, 0xFFFFFFFF)),
            st.sampled_from(PIDS), max_size=5))
    helpers = dict(FP_HELPERS)
    for imm in draw(st.lists(st.integers(-2, 220), max_size=4)):
        helpers[imm] = draw(st.sampled_from(
            ["bpf_tail_call", "bpf_redirect", "bpf_map_lookup_elem", "bpf_skb_load_bytes",
             "bpf_redirect_peer", "bpf_loop", "bpf_for_each_map_elem", "weird"]))
    return FakeSource(programs=programs, arrays=arrays, helpers=helpers)


# ---------------------------------------------------------------- well-formedness


def _check_values(vals: object, what: str) -> None:
    if vals is None:
        return
    assert isinstance(vals, frozenset), (what, vals)
    for v in vals:
        assert type(v) is int and S32_MIN <= v <= S32_MAX, (what, v)


def _check_ranges(ranges: object, what: str) -> None:
    if ranges is None:
        return
    assert isinstance(ranges, tuple), (what, ranges)
    prev_hi: int | None = None
    for r in ranges:
        assert isinstance(r, tuple) and len(r) == 2, (what, r)
        lo, hi = r
        assert type(lo) is int and type(hi) is int, (what, r)
        assert S32_MIN <= lo <= hi <= S32_MAX, (what, r)
        if prev_hi is not None:
            assert lo > prev_hi + 1, (what, "ranges not sorted, disjoint and merged", ranges)
        prev_hi = hi


def check_analysis(a: Any, code: ProgramCode | None, source: FakeSource,
                   seen: set[int] | None = None) -> None:
    """``a`` is a well-formed Analysis, and so is every nested tail-call analysis."""
    seen = set() if seen is None else seen
    if id(a) in seen:
        return
    seen.add(id(a))
    assert isinstance(a, Analysis), a
    _check_values(a.possible, "possible")
    assert a.reason is None or isinstance(a.reason, str), a.reason
    assert isinstance(a.exits, Mapping), a.exits
    n = len(code.insns) if code is not None else None
    for pc, vals in a.exits.items():
        assert type(pc) is int, pc
        if n is not None:
            assert 0 <= pc < n, ("exit pc outside the program", pc, n)
        _check_values(vals, f"exits[{pc}]")
    ranges = getattr(a, "ranges", None)
    _check_ranges(ranges, "ranges")
    if a.possible is not None and ranges is not None:
        for v in a.possible:
            assert any(lo <= v <= hi for lo, hi in ranges), ("ranges miss", v, ranges)
    exit_ranges = getattr(a, "exit_ranges", None)
    if exit_ranges is not None:
        for pc, rs in exit_ranges.items():
            _check_ranges(rs, f"exit_ranges[{pc}]")
    assert isinstance(a.tail_calls, tuple), a.tail_calls
    for tc in a.tail_calls:
        assert len(tc.analyses) == len(tc.targets), tc
        for t, sub in zip(tc.targets, tc.analyses, strict=True):
            if sub is not None:
                target = code if code is not None and t == code.prog_id else source.programs.get(t)
                check_analysis(sub, target, source, seen)


def _listing(code: ProgramCode, source: FakeSource) -> str:
    try:
        return listing(code, source.helper_name)
    except Exception as err:  # the disassembler is not under test here
        return f"prog {code.prog_id}: {code.insns} func_starts={code.func_starts} ({err!r})"


def run_engine(root: ProgramCode, source: FakeSource) -> None:
    note(_listing(root, source))
    for _pid, p in sorted(source.programs.items()):
        if p is not root:
            note(_listing(p, source))
    note(f"prog arrays: {source.arrays}")
    a = analyse(root, source, step_budget=BUDGET)
    check_analysis(a, root, source)


# ---------------------------------------------------------------- (a) random streams


@st.composite
def random_trees(draw: st.DrawFn) -> tuple[ProgramCode, FakeSource]:
    root = draw(random_programs(draw(st.sampled_from([100, None, 1])), 48))
    programs: dict[int, ProgramCode] = {}
    for pid in draw(st.lists(st.sampled_from(PIDS[:-1]), max_size=3, unique=True)):
        programs[pid] = draw(random_programs(pid, 24))
    if root.prog_id is not None:
        programs[root.prog_id] = root
    return root, draw(sources(programs))


@FUZZ
@given(random_trees())
def test_random_instruction_streams_never_break_the_engine(
    case: tuple[ProgramCode, FakeSource],
) -> None:
    run_engine(*case)


# ---------------------------------------------------------------- (b) mutations


def _mutate(draw: st.DrawFn, code: list[Insn], starts: list[int]) -> None:
    """One random mutation of ``code`` (and perhaps ``starts``), in place."""
    n = len(code)
    op = draw(st.sampled_from([
        "opcode_bit", "opcode", "dst", "src", "off", "imm", "truncate", "jump_out",
        "split_ldimm", "special", "delete", "insert", "starts", "swap",
    ]))
    if n == 0:
        op = "special"
    i = draw(st.integers(0, max(n - 1, 0)))
    c = code[i] if n else Insn(0, 0, 0, 0, 0)
    if op == "opcode_bit":
        code[i] = Insn(c.code ^ (1 << draw(st.integers(0, 7))), c.dst, c.src, c.off, c.imm)
    elif op == "opcode":
        new = draw(st.one_of(st.sampled_from(VALID_CODES + EXTRA_CODES), st.integers(0, 255)))
        code[i] = Insn(new, c.dst, c.src, c.off, c.imm)
    elif op == "dst":
        code[i] = Insn(c.code, draw(st.one_of(st.sampled_from([11, 12, 15]), regs16)),
                       c.src, c.off, c.imm)
    elif op == "src":
        code[i] = Insn(c.code, c.dst, draw(st.one_of(st.sampled_from([11, 12, 15]), regs16)),
                       c.off, c.imm)
    elif op == "off":
        new_off = draw(st.one_of(off16, st.just(c.off + 1), st.just(c.off - 1),
                                 st.sampled_from([1, 8, 16, 32])))
        code[i] = Insn(c.code, c.dst, c.src, max(-(1 << 15), min((1 << 15) - 1, new_off)),
                       c.imm)
    elif op == "imm":
        new_imm = draw(st.one_of(imm32, st.just(c.imm + 1), st.just(c.imm - 1)))
        code[i] = Insn(c.code, c.dst, c.src, c.off, max(S32_MIN, min(S32_MAX, new_imm)))
    elif op == "truncate":
        del code[draw(st.integers(0, n)):]
    elif op == "jump_out":
        far = draw(st.sampled_from([n - i, n - i - 1, -i - 1, -i - 2, n, -n - 5, 1 << 14]))
        far = max(-(1 << 15), min((1 << 15) - 1, far))
        cls = c.code & 7
        if cls in (I.BPF_JMP, I.BPF_JMP32) and c.code & 0xF0 not in (I.BPF_CALL, I.BPF_EXIT):
            code[i] = Insn(c.code, c.dst, c.src, far, far if cls == I.BPF_JMP32 else c.imm)
        else:
            code[i] = Insn(draw(st.sampled_from([0x05, 0x15, 0xE5, 0x06, 0x85])), c.dst,
                           draw(st.sampled_from([0, 1])), far, far)
    elif op == "split_ldimm":
        firsts = [k for k, x in enumerate(code) if x.code == 0x18] or [i]
        k = draw(st.sampled_from(firsts))
        how = draw(st.integers(0, 2))
        if how == 0 and k + 1 < len(code):
            del code[k + 1]  # lose the second half
        elif how == 1:
            code.insert(k + 1, draw(st.sampled_from(
                [Insn(0x95, 0, 0, 0, 0), Insn(0xB7, 0, 0, 0, 2), Insn(0x18, 1, 0, 0, 1)])))
        else:  # a jump into the second half
            at = max(k - 1, 0)
            code.insert(at, Insn(0x05, 0, 0, k + 1 - at, 0))
    elif op == "special":
        recs = draw(special_insns(n))
        new = list(decode(b"".join(recs)))
        if draw(st.booleans()) and n:
            code[i : i + len(new)] = new
        else:
            code[i:i] = new
    elif op == "delete":
        if n:
            del code[i]
    elif op == "insert":
        raw = draw(st.binary(min_size=8, max_size=8))
        code.insert(i, decode(raw)[0])
    elif op == "starts":
        starts[:] = draw(func_starts(n))
    else:
        j = draw(st.integers(0, max(n - 1, 0)))
        if n:
            code[i], code[j] = code[j], code[i]


@st.composite
def mutated_trees(draw: st.DrawFn) -> tuple[ProgramCode, FakeSource]:
    tree: Tree = draw(st.one_of(
        trees(tail_calls=True, subprog=True, loops=True),
        trees(tail_calls=False, subprog=True, loops=False),
        fp_trees(),
    ))
    root = tree.root
    programs = dict(tree.source.programs)
    mutated: dict[int | None, ProgramCode] = {}
    for key, p in [(root.prog_id, root), *((k, v) for k, v in programs.items() if v is not root)]:
        if key != root.prog_id and draw(st.integers(0, 2)):
            continue  # leave most tail-call targets alone
        code = list(p.insns)
        starts = list(p.func_starts)
        for _ in range(draw(st.integers(1, 6))):
            _mutate(draw, code, starts)
        mutated[key] = ProgramCode(p.prog_id, p.name, tuple(code), tuple(starts))
    new_root = mutated[root.prog_id]
    for k, v in mutated.items():
        if k is not None:
            programs[k] = v
    arrays = {k: dict(v) for k, v in tree.source.arrays.items()}
    if draw(st.booleans()):
        for mid in draw(st.lists(st.sampled_from(MAP_IDS), max_size=2, unique=True)):
            arrays.setdefault(mid, {})[draw(st.integers(0, 4))] = draw(st.sampled_from(PIDS))
    for pid in PIDS[:-1]:
        if pid not in programs and draw(st.integers(0, 3)) == 0:
            programs[pid] = draw(random_programs(pid, 16))
    helpers = dict(FP_HELPERS if draw(st.booleans()) else HELPERS)
    return new_root, FakeSource(programs=programs, arrays=arrays, helpers=helpers)


@FUZZ
@given(mutated_trees())
def test_mutated_programs_never_break_the_engine(
    case: tuple[ProgramCode, FakeSource],
) -> None:
    run_engine(*case)
