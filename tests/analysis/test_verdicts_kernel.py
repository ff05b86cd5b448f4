"""The verdict analysis against the kernel: BPF_PROG_TEST_RUN is the ground truth.

Programs are compiled from bpf/lab/*.c by bcc (and tests/bpf/subprog.c by clang, loaded
by bpftool), read back from the kernel (xlated code, func_info, prog arrays, kallsyms)
and analysed; then each is run over many generated packets and contexts. Every observed
return value must be in ``possible`` (soundness), and for the programs written to have
an exact answer every possible value must be observed too (precision). The same trees
are loaded once more with ``net.core.bpf_jit_harden=2`` (constant blinding: immediates
rewritten through r11) and checked again.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.bpf import source_path
from tcaudit.kernel import bpf
from tcaudit.lab.sandbox import Sandbox
from tests.analysis.test_patterns_kernel import covers, definite, jit_harden, uses_r11
from tests.conftest import require_privileged

VERDICT_PROGRAMS = (
    "by_byte",
    "by_mark",
    "shift",
    "keep",
    "spill",
    "from_packet",
    "tail_ok",
    "tail_shot",
    "tail_root",
)
EXACT = {
    "by_byte": {-1, 0, 2, 7},
    "by_mark": {-1, 0, 2, 3, 4, 7, 8},
    "shift": {0, 2},
    "keep": {0, 2},
    "spill": {-1, 7},
    "from_packet": {-1, *range(16)},  # p[14] & 15, or UNSPEC for a short frame
    "tail_ok": {0},
    "tail_shot": {2},
    "tail_root": {-1, 0, 2},
}


def _verdict_tree(harden: int | None) -> Iterator[dict[str, int]]:
    require_privileged()
    box = Sandbox(prefix="tcatvk")
    try:
        with jit_harden(harden):
            programs, _ = box.load_tree(
                source_path("lab/verdicts.c"),
                VERDICT_PROGRAMS,
                "verdict_jmp",
                {"tail_ok": 0, "tail_shot": 1},
            )
        yield {name: prog.fd for name, prog in programs.items()}
    finally:
        box.close()


def _cilium_tree(harden: int | None) -> Iterator[dict[str, int]]:
    require_privileged()
    box = Sandbox(prefix="tcatvk")
    try:
        with jit_harden(harden):
            programs, _ = box.load_cilium_tree()
        yield {name: prog.fd for name, prog in programs.items()}
    finally:
        box.close()


@pytest.fixture(scope="module")
def verdict_fds() -> Iterator[dict[str, int]]:
    yield from _verdict_tree(None)


@pytest.fixture(scope="module")
def cilium_fds() -> Iterator[dict[str, int]]:
    yield from _cilium_tree(None)


@pytest.fixture(scope="module")
def blinded_verdict_fds() -> Iterator[dict[str, int]]:
    """The verdict tree loaded with bpf_jit_harden=2 (restored right after loading)."""
    yield from _verdict_tree(2)


@pytest.fixture(scope="module")
def blinded_cilium_fds() -> Iterator[dict[str, int]]:
    yield from _cilium_tree(2)


def packets(seed: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """(packet, __sk_buff context) pairs: random sizes, bytes, ethertypes, marks."""
    rng = random.Random(seed)
    for i in range(count):
        size = rng.choice([14, 15, 20, 60, 64, 65, 100, 101, 200, 400])
        data = bytearray(rng.randbytes(size))
        data[12:14] = rng.choice([b"\x08\x00", b"\x86\xdd", b"\x08\x06", data[12:14]])
        if size < 60 and data[12:14] in (b"\x08\x00", b"\x86\xdd"):
            data[12:14] = b"\x08\x06"  # TEST_RUN refuses IP packets shorter than their header
        mark = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 0xDEAD, rng.getrandbits(32)]) if i % 4 else i
        priority = rng.getrandbits(32)
        # struct __sk_buff: mark at offset 8, priority at 32 (the fields TEST_RUN accepts)
        ctx = bytearray(36)
        struct.pack_into("=I", ctx, 8, mark)
        struct.pack_into("=I", ctx, 32, priority)
        yield bytes(data), bytes(ctx)


def observed(fd: int, seed: int, count: int = 600) -> set[int]:
    seen = set()
    for data, ctx in packets(seed, count):
        retval = bpf.prog_test_run(fd, data, ctx=ctx).retval
        seen.add(struct.unpack("=i", struct.pack("=I", retval))[0])
    return seen


@pytest.mark.parametrize("name", VERDICT_PROGRAMS)
def test_every_observed_return_is_possible(verdict_fds: dict[str, int], name: str) -> None:
    analysis = VerdictAnalyser().analysis(bpf.prog_info(verdict_fds[name]).id)
    assert not isinstance(analysis, str), analysis
    seen = observed(verdict_fds[name], seed=sum(map(ord, name)))
    if name in EXACT:
        assert analysis.possible == EXACT[name]
        assert seen == EXACT[name]  # the kernel reaches every value we claim
    else:
        assert analysis.possible is None and analysis.reason
        assert len(seen) > 1
    if analysis.possible is not None:
        assert seen <= analysis.possible


def test_tail_call_answer_depends_on_the_prog_array(verdict_fds: dict[str, int]) -> None:
    root = bpf.prog_info(verdict_fds["tail_root"])
    analysis = VerdictAnalyser().analysis(root.id)
    assert not isinstance(analysis, str)
    assert analysis.reason is not None and "prog array" in analysis.reason
    [site] = analysis.tail_calls
    targets = {bpf.prog_info(verdict_fds[n]).id for n in ("tail_ok", "tail_shot")}
    assert set(site.targets) == targets
    assert analysis.prog_arrays and analysis.prog_arrays[0] in root.map_ids


def test_cilium_like_tree(cilium_fds: dict[str, int]) -> None:
    infos = {name: bpf.prog_info(fd) for name, fd in cilium_fds.items()}
    assert sum(info.xlated_len // 8 for info in infos.values()) > 2000
    analyser = VerdictAnalyser()
    root = analyser.analysis(infos["cil_from_container"].id)
    assert not isinstance(root, str)
    assert root.possible == {0, 2, 7}  # OK, SHOT and REDIRECT on different paths
    seen = observed(cilium_fds["cil_from_container"], seed=7, count=1500)
    assert seen <= root.possible
    assert {0, 2} <= seen
    reached = {t for site in root.tail_calls for t in site.targets}
    assert {infos[n].id for n in ("cil_handle_ipv4", "cil_handle_ipv6")} <= reached


def _clang_subprog(harden: AbstractContextManager[None]) -> Iterator[int]:
    """tests/bpf/subprog.c compiled by clang, loaded by bpftool on a private bpffs."""
    require_privileged()
    if not (shutil.which("clang") and shutil.which("bpftool")):
        pytest.fail("clang and bpftool are installed by make setup")
    workdir = Path(tempfile.mkdtemp(prefix="tcat-bpffs-"))
    mount = workdir / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mount)], check=True)
    fd = -1
    try:
        obj = workdir / "subprog.o"
        src = Path(__file__).resolve().parents[1] / "bpf" / "subprog.c"
        subprocess.run(
            [
                "clang",
                "-O2",
                "-g",
                "-target",
                "bpf",
                f"-I/usr/include/{os.uname().machine}-linux-gnu",
                "-c",
                str(src),
                "-o",
                str(obj),
            ],
            check=True,
        )
        with harden:
            subprocess.run(
                ["bpftool", "prog", "load", str(obj), str(mount / "p"), "type", "classifier"],
                check=True,
            )
        out = subprocess.run(
            ["bpftool", "prog", "show", "pinned", str(mount / "p")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fd = bpf.prog_fd_by_id(int(out.split(":", 1)[0]))
        (mount / "p").unlink()
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def clang_subprog() -> Iterator[int]:
    yield from _clang_subprog(nullcontext())


@pytest.fixture
def blinded_clang_subprog() -> Iterator[int]:
    yield from _clang_subprog(jit_harden(2))


def test_subprogram_return_flows_to_the_caller(clang_subprog: int) -> None:
    info = bpf.prog_info(clang_subprog, with_code=True)
    assert info.func_starts is not None and len(info.func_starts) == 2  # main + decide
    analysis = VerdictAnalyser().analysis(info.id)
    assert not isinstance(analysis, str)
    assert analysis.possible == {-1, 2}
    assert observed(clang_subprog, seed=3, count=200) == {-1, 2}


# -- the same, loaded with constant blinding (bpf_jit_harden=2) --------------------------
# Blinding rewrites every non-zero immediate as r11 = imm ^ rnd; r11 ^= rnd, map
# addresses included (so the xlated dump no longer names the prog array). The answers
# must stay sound; definite and exact as without blinding is the goal.


@pytest.mark.privileged
def test_blinding_went_through_r11(blinded_verdict_fds: dict[str, int]) -> None:
    require_privileged()
    assert uses_r11(blinded_verdict_fds["by_byte"])


@pytest.mark.privileged
@pytest.mark.parametrize("name", VERDICT_PROGRAMS)
def test_sound_with_constant_blinding(blinded_verdict_fds: dict[str, int], name: str) -> None:
    require_privileged()
    analysis = VerdictAnalyser().analysis(bpf.prog_info(blinded_verdict_fds[name]).id)
    assert not isinstance(analysis, str), analysis
    seen = observed(blinded_verdict_fds[name], seed=sum(map(ord, name)))
    missed = sorted(v for v in seen if not covers(analysis, v))
    assert not missed, f"{name}: kernel returned {missed}, answer {analysis}"


@pytest.mark.privileged
@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_with_constant_blinding(blinded_verdict_fds: dict[str, int], name: str) -> None:
    require_privileged()
    analysis = VerdictAnalyser().analysis(bpf.prog_info(blinded_verdict_fds[name]).id)
    assert not isinstance(analysis, str), analysis
    assert definite(analysis), analysis.reason
    assert analysis.possible == EXACT[name]


@pytest.mark.privileged
def test_cilium_like_tree_with_constant_blinding(blinded_cilium_fds: dict[str, int]) -> None:
    require_privileged()
    fd = blinded_cilium_fds["cil_from_container"]
    root = VerdictAnalyser().analysis(bpf.prog_info(fd).id)
    assert not isinstance(root, str)
    seen = observed(fd, seed=7, count=1500)
    assert {0, 2} <= seen
    assert all(covers(root, v) for v in seen), (seen, root.possible, root.reason)
    assert root.possible == {0, 2, 7}, root.reason


@pytest.mark.privileged
def test_subprogram_with_constant_blinding(blinded_clang_subprog: int) -> None:
    require_privileged()
    info = bpf.prog_info(blinded_clang_subprog, with_code=True)
    analysis = VerdictAnalyser().analysis(info.id)
    assert not isinstance(analysis, str)
    seen = observed(blinded_clang_subprog, seed=3, count=200)
    assert seen == {-1, 2}
    assert all(covers(analysis, v) for v in seen), (analysis.possible, analysis.reason)
    assert analysis.possible == {-1, 2}, analysis.reason
