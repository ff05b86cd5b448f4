"""Real vendors' call shapes, in programs of our own, against the kernel.

tests/bpf/callpatterns.c holds bpf-to-bpf subprograms writing the verdict through a
pointer into the caller's stack, bpf_loop() callbacks, drop notifications tail-called
from many sites with the exit code in skb->cb[4] (plain, or packed with an extended
error above the low byte) and the "(int)ret < 0" sign-extension idiom. bcc keeps a
``noinline`` function as a bpf-to-bpf call but cannot load it (the callee lands in a
section of its own: "last insn is not an exit or jmp"), so the file is compiled by
clang-14 and loaded with ``bpftool prog loadall`` on a private bpffs, as
tests/analysis/test_verdicts_kernel.py does for tests/bpf/subprog.c. clang-14 merges the
drop-notification sites of one function into a single tail call (IR sinking, then tail
merging), so the file is compiled with both turned off: every site stays a site.

A few raw-bytecode programs (tests/bpfasm.py) pin down shapes the compiler does not
promise: a callee writing its own stack slot at the very offset where the caller keeps
its default verdict, ten literal notification sites, and a 64-bit r0 whose upper half
disagrees with the sign of its low half; two more (sub_upper_raw, loop_count_raw) cut
sub_keep's and loop_verdict's shapes down to what they need (as does loop_nocount in C).

Like tests/analysis/test_patterns_kernel.py, each program is run with BPF_PROG_TEST_RUN over a
few hundred generated frames and contexts and checked for soundness (every value the
kernel returned is covered), definiteness (not "unknown") and exactness (the truth in
TRUTH), both as loaded normally and loaded with ``net.core.bpf_jit_harden=2``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcaudit.analysis import insns as I
from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.kernel import bpf
from tests import bpfasm as A
from tests.analysis.test_patterns_kernel import (
    CTX_CB,
    CTX_MARK,
    CTX_PRIORITY,
    Truth,
    check_definite,
    check_exact,
    check_sound,
    exact,
    jit_harden,
    packets,
    s32,
)
from tests.bpfasm import R0, R1, R2, R3, R6, R7, R10, Label
from tests.conftest import require_privileged

SOURCE = Path(__file__).resolve().parents[1] / "bpf" / "callpatterns.c"
CLANG = "clang-14"
CFLAGS = (
    "-O2",
    "-g",
    "-target",
    "bpf",
    # keep every drop-notification site a tail call of its own (see the docstring)
    "-mllvm",
    "-simplifycfg-sink-common=false",
    "-mllvm",
    "-enable-tail-merge=false",
)
CB_REASON, CB_EXIT = CTX_CB + 2 * 4, CTX_CB + 4 * 4
BPF_FUNC_LOOP = 181
NOTIFY_SLOTS = {"notify": 0, "notify_packed": 1}

# -- raw bytecode ------------------------------------------------------------------------


def sub_alias_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """The caller keeps its default verdict (mark & 2: OK or SHOT) at r10-8 and hands
    r10-16 (UNSPEC) to a subprogram; the subprogram stores 99 at ITS r10-8 and
    REDIRECT through the pointer when the priority is odd. The caller returns the
    struct's verdict unless still UNSPEC, else its default. Exact {OK, SHOT, REDIRECT}."""
    del calls_fd
    return A.asm(
        A.mov(R6, R1),
        A.ldx(4, R2, R1, CTX_MARK),
        A.and_(R2, 2),
        A.stx(4, R10, -8, R2),
        A.st(4, R10, -16, -1),
        A.mov(R1, R6),
        A.mov(R2, R10),
        A.add(R2, -16),
        A.pseudo_call("callee"),
        A.ldx(4, R0, R10, -16),
        A.jmp32("ne", R0, -1, "out"),
        A.ldx(4, R0, R10, -8),
        Label("out"),
        A.exit_(),
        Label("callee"),
        A.st(8, R10, -8, 99),
        A.ldx(4, R3, R1, CTX_PRIORITY),
        A.jmp("set", R3, 1, "redirect"),
        A.ja("done"),
        Label("redirect"),
        A.st(4, R2, 0, 7),
        Label("done"),
        A.mov(R0, 0),
        A.exit_(),
    )


def sub_upper_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """sub_keep's struct as clang sets it up: one 64-bit store puts reason 0 in r10-16
    and UNSPEC in r10-12; the subprogram writes REDIRECT into the upper half (r10-12)
    only when the priority is odd. The caller returns r10-12. Exact {UNSPEC, REDIRECT}."""
    del calls_fd
    return A.asm(
        A.ld_imm64(R2, 0xFFFF_FFFF_0000_0000),
        A.stx(8, R10, -16, R2),
        A.mov(R2, R10),
        A.add(R2, -16),
        A.pseudo_call("callee"),
        A.ldx(4, R0, R10, -12),
        A.exit_(),
        Label("callee"),
        A.ldx(4, R3, R1, CTX_PRIORITY),
        A.jmp("set", R3, 1, "redirect"),
        A.ja("done"),
        Label("redirect"),
        A.st(4, R2, 4, 7),
        Label("done"),
        A.mov(R0, 0),
        A.exit_(),
    )


def loop_count_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """loop_verdict without bpf_loop: a plain bounded loop (4 rounds) calls a subprogram
    with the round and r10-16 (want = mark & 7, verdict OK, steps 0); the subprogram
    bumps steps and sets SHOT when the round is the wanted one. Exact {OK, SHOT}."""
    del calls_fd
    return A.asm(
        A.ldx(4, R3, R1, CTX_MARK),
        A.and_(R3, 7),
        A.stx(4, R10, -16, R3),
        A.st(4, R10, -12, 0),
        A.st(4, R10, -8, 0),
        A.mov(R7, 0),
        Label("top"),
        A.jmp("ge", R7, 4, "out"),
        A.mov(R1, R7),
        A.mov(R2, R10),
        A.add(R2, -16),
        A.pseudo_call("step"),
        A.add(R7, 1),
        A.ja("top"),
        Label("out"),
        A.ldx(4, R0, R10, -12),
        A.exit_(),
        Label("step"),
        A.ldx(4, R3, R2, 8),
        A.add(R3, 1),
        A.stx(4, R2, 8, R3),
        A.ldx(4, R3, R2, 0),
        A.jmp("ne", R3, R1, "skip"),
        A.st(4, R2, 4, 2),
        Label("skip"),
        A.mov(R0, 0),
        A.exit_(),
    )


# reason (cb[2]) and extended error for each site; the mark (1..10) picks the site
SITES = tuple((100 + i, 0x10 * i + 1) for i in range(1, 11))


def _notify_sites(calls_fd: int, slot: int, cb4: Callable[[int, int], int]) -> tuple[I.Insn, ...]:
    dispatch = [A.jmp("eq", R2, mark, f"site{mark}") for mark in range(1, len(SITES) + 1)]
    sites: list[A.Item] = []
    for mark, (reason, ext) in enumerate(SITES, start=1):
        code = 0 if mark == len(SITES) and slot == 1 else 2  # one "audit" site: OK
        sites += [
            Label(f"site{mark}"),
            A.st(4, R6, CB_REASON, reason),
            A.st(4, R6, CB_EXIT, cb4(ext, code)),
            A.mov(R1, R6),
            A.ld_imm64(R2, calls_fd, src=I.BPF_PSEUDO_MAP_FD, imm2=0),
            A.mov(R3, slot),
            A.tail_call(),
            A.mov(R0, code),
            A.exit_(),
        ]
    return A.asm(
        A.mov(R6, R1),
        A.ldx(4, R2, R1, CTX_MARK),
        *dispatch,
        A.mov(R0, 0),
        A.exit_(),
        *sites,
    )


def drops_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """Ten literal tail-call sites into notify, each with its own reason in cb[2] and
    SHOT in cb[4]; a failed call returns SHOT; no site: OK. Exact {OK, SHOT}."""
    return _notify_sites(calls_fd, 0, lambda ext, code: code)


def drops_packed_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """Ten sites into notify_packed with cb[4] = ext << 8 | code, each ext its own; the
    last site's code is OK (audit), the others SHOT. Exact {OK, SHOT}."""
    return _notify_sites(calls_fd, 1, lambda ext, code: ext << 8 | code)


def sext_raw(calls_fd: int) -> tuple[I.Insn, ...]:
    """r0 is one of 0x1_00000007, 0x80000000, -22 and 0xffffffff_00000000 (the mark
    picks); r1 = r0 sign-extended from 32 bits; SHOT if r1 s< 0, else r0 itself. The
    64-bit sign of r0 disagrees with its low half for three of the four.
    Exact {OK, SHOT, REDIRECT}."""
    del calls_fd
    return A.asm(
        A.ldx(4, R2, R1, CTX_MARK),
        A.and_(R2, 3),
        A.ld_imm64(R0, 0x1_0000_0007),
        A.jmp("eq", R2, 0, "test"),
        A.ld_imm64(R0, 0x8000_0000),
        A.jmp("eq", R2, 1, "test"),
        A.mov(R0, -22),
        A.jmp("eq", R2, 2, "test"),
        A.ld_imm64(R0, 0xFFFF_FFFF_0000_0000),
        Label("test"),
        A.mov(R1, R0),
        A.lsh(R1, 32),
        A.alu("arsh", R1, 32),
        A.jmp("slt", R1, 0, "shot"),
        A.exit_(),
        Label("shot"),
        A.mov(R0, 2),
        A.exit_(),
    )


RAW: dict[str, Callable[[int], tuple[I.Insn, ...]]] = {
    "sub_alias_raw": sub_alias_raw,
    "sub_upper_raw": sub_upper_raw,
    "loop_count_raw": loop_count_raw,
    "drops_raw": drops_raw,
    "drops_packed_raw": drops_packed_raw,
    "sext_raw": sext_raw,
}

# -- the truth ---------------------------------------------------------------------------

TRUTH: dict[str, Truth] = {
    # 1. a subprogram writes the verdict into the caller's struct
    "sub_ptr": exact(0, 2),
    # 2. ... while the caller keeps its default in a slot of its own
    "sub_keep": exact(0, 2, 7),
    "sub_alias_raw": exact(0, 2, 7),
    # (sub_keep's stack layout alone: a 64-bit store, the upper half maybe rewritten)
    "sub_upper_raw": exact(-1, 7),
    # 3. bpf_loop() callback writing into the caller's context struct
    "loop_verdict": exact(0, 2),
    "loop_decide": exact(-1, 7),
    "loop_nocount": exact(0, 2),
    # (the same without bpf_loop: a bounded loop calling a subprogram)
    "loop_count_raw": exact(0, 2),
    # 4. many notification sites, one exit code in cb[4]
    "drops_many": exact(0, 2),
    "drops_raw": exact(0, 2),
    "notify": Truth(anything=True),
    # 5. cb[4] = ext << 8 | exitcode, the target returns cb[4] & 0xff
    "drops_packed": exact(0, 2),
    "drops_packed_raw": exact(0, 2),
    "notify_packed": Truth(ranges=((0, 255),)),
    # 6. the sign-extended copy is tested, the original returned
    "sext_ret": exact(0, 2, 7),
    "sext_raw": exact(0, 2, 7),
}
C_PROGRAMS = tuple(name for name in TRUTH if name not in RAW)
NAMES = tuple(TRUTH)
SUBPROGRAMS = (
    "sub_ptr",
    "sub_keep",
    "sub_alias_raw",
    "sub_upper_raw",
    "loop_count_raw",
    "sext_ret",
)
LOOPS = ("loop_verdict", "loop_decide", "loop_nocount")
# program -> (notify program, how many tail-call sites it has at least)
NOTIFIERS = {
    "drops_many": ("notify", 11),
    "drops_raw": ("notify", 10),
    "drops_packed": ("notify_packed", 10),
    "drops_packed_raw": ("notify_packed", 10),
}

# -- loading -----------------------------------------------------------------------------


def _compile(out: Path) -> None:
    if not (shutil.which(CLANG) and shutil.which("bpftool")):
        pytest.fail(f"{CLANG} and bpftool are installed by make setup")
    subprocess.run(
        [
            CLANG,
            *CFLAGS,
            f"-I/usr/include/{os.uname().machine}-linux-gnu",
            "-c",
            str(SOURCE),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


def _kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


@dataclass
class Loaded:
    harden: int | None
    fds: dict[str, int]
    seen: dict[str, set[int]]

    def observed(self, name: str) -> set[int]:
        if name not in self.seen:
            fd = self.fds[name]
            self.seen[name] = {
                s32(bpf.prog_test_run(fd, d, ctx=c).retval)
                for d, c in packets(sum(map(ord, name)))
            }
        return self.seen[name]

    def analysis(self, name: str) -> object:
        result = VerdictAnalyser().analysis(bpf.prog_info(self.fds[name]).id)
        assert not isinstance(result, str), result
        return result

    def xlated(self, name: str) -> tuple[I.Insn, ...]:
        return tuple(I.decode(bpf.prog_info(self.fds[name], with_code=True).xlated or b""))


@pytest.fixture(scope="module", params=[None, 2], ids=["plain", "harden2"])
def loaded(request: pytest.FixtureRequest) -> Iterator[Loaded]:
    """callpatterns.c through bpftool (programs and maps pinned on a private bpffs,
    unpinned right after: the fds keep them) plus the raw programs, the notify
    programs put in their slots; bpf_jit_harden as the param says while loading."""
    require_privileged()
    if _kernel_version() < (5, 17):
        pytest.skip("bpf_loop() (helper 181) needs Linux 5.17; callpatterns.c is one object")
    work = Path(tempfile.mkdtemp(prefix="tcacp-", dir="/tmp"))
    mount = work / "fs"
    mount.mkdir()
    fds: dict[str, int] = {}
    mounted = False
    try:
        obj = work / "callpatterns.o"
        _compile(obj)
        subprocess.run(["mount", "-t", "bpf", "bpf", str(mount)], check=True)
        mounted = True
        progs, maps = mount / "progs", mount / "maps"
        with jit_harden(request.param):
            done = subprocess.run(
                ["bpftool", "prog", "loadall", str(obj), str(progs), "pinmaps", str(maps)],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr[-4000:]
            for name in C_PROGRAMS:
                fds[name] = bpf.obj_get(str(progs / name))
            fds["calls"] = bpf.obj_get(str(maps / "calls"))
            for name, build in RAW.items():
                code = I.encode(build(fds["calls"]))
                fds[name] = bpf.prog_load(code, name=name)
        for name, slot in NOTIFY_SLOTS.items():
            bpf.map_update(fds["calls"], struct.pack("=I", slot), struct.pack("=I", fds[name]))
        shutil.rmtree(progs)
        shutil.rmtree(maps)
        yield Loaded(request.param, fds, {})
    finally:
        for fd in fds.values():
            os.close(fd)
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)


# -- the code is what the patterns say ---------------------------------------------------


def _pseudo_calls(code: tuple[I.Insn, ...]) -> int:
    return sum(1 for x in code if x.code == I.BPF_JMP | I.BPF_CALL and x.src == I.BPF_PSEUDO_CALL)


def _helper_calls(code: tuple[I.Insn, ...], helper: int) -> int:
    return sum(
        1 for x in code if x.code == I.BPF_JMP | I.BPF_CALL and x.src == 0 and x.imm == helper
    )


@pytest.mark.privileged
@pytest.mark.parametrize("name", SUBPROGRAMS)
def test_subprogram_stays_a_bpf_to_bpf_call(loaded: Loaded, name: str) -> None:
    require_privileged()
    assert _pseudo_calls(loaded.xlated(name)) >= 1
    starts = bpf.prog_info(loaded.fds[name], with_code=True).func_starts
    if name not in RAW:  # raw bytecode carries no BTF, hence no func_info
        assert starts is not None and len(starts) == 2, starts


@pytest.mark.privileged
@pytest.mark.parametrize("name", LOOPS)
def test_bpf_loop_is_inlined_into_a_callback_call(loaded: Loaded, name: str) -> None:
    """The verifier replaced bpf_loop() (flags 0, one callback) by a loop calling the
    callback as a subprogram; were it not inlined, the helper call would remain."""
    require_privileged()
    code = loaded.xlated(name)
    assert _helper_calls(code, BPF_FUNC_LOOP) == 0
    assert _pseudo_calls(code) == 1


@pytest.mark.privileged
@pytest.mark.parametrize("name", sorted(NOTIFIERS))
def test_many_sites_reach_the_notify_program(loaded: Loaded, name: str) -> None:
    require_privileged()
    target, at_least = NOTIFIERS[name]
    assert _helper_calls(loaded.xlated(name), I.BPF_FUNC_TAIL_CALL) >= at_least
    analysis = loaded.analysis(name)
    notify = bpf.prog_info(loaded.fds[target]).id
    sites = [s for s in getattr(analysis, "tail_calls", ()) if notify in s.targets]
    assert len(sites) >= at_least, f"{name}: {getattr(analysis, 'tail_calls', None)}"


@pytest.mark.privileged
def test_sext_ret_tests_a_sign_extended_copy(loaded: Loaded) -> None:
    """clang-14 emitted the idiom: a copy of r0 shifted left 32 and arithmetically
    right 32, then a signed test on the copy."""
    require_privileged()
    code = loaded.xlated("sext_ret")
    shapes = [(x.code, x.imm) for x in code]
    lsh = (I.BPF_ALU64 | I.BPF_LSH | I.BPF_K, 32)
    arsh = (I.BPF_ALU64 | I.BPF_ARSH | I.BPF_K, 32)
    at = shapes.index(lsh)  # constant blinding leaves shifts alone
    assert shapes[at + 1] == arsh, code[at - 1 : at + 3]
    assert code[at - 1].code == I.BPF_ALU64 | I.BPF_MOV | I.BPF_X
    assert code[at - 1].src == 0 and code[at].dst == code[at - 1].dst == code[at + 1].dst


# -- the checks --------------------------------------------------------------------------


@pytest.mark.privileged
@pytest.mark.parametrize("name", NAMES)
def test_sound(loaded: Loaded, name: str) -> None:
    require_privileged()
    check_sound(loaded.analysis(name), loaded.observed(name), name)


@pytest.mark.privileged
@pytest.mark.parametrize("name", [n for n in NAMES if not TRUTH[n].anything])
def test_definite(loaded: Loaded, name: str) -> None:
    require_privileged()
    check_definite(loaded.analysis(name), name)


@pytest.mark.privileged
@pytest.mark.parametrize("name", NAMES)
def test_exact(loaded: Loaded, name: str) -> None:
    require_privileged()
    check_exact(TRUTH[name], loaded.analysis(name), loaded.observed(name), name)
