"""Values read from a map are constants only when the kernel itself treats the map as
read-only for programs: BPF_F_RDONLY_PROG and frozen (verifier.c bpf_map_is_rdonly).

A program loads its verdict from a one-element array map through a direct value
address (ld_imm64 with BPF_PSEUDO_MAP_VALUE, as loaders do for .rodata) and returns it.
BPF_PROG_TEST_RUN is the ground truth.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.analysis.insns import Insn, encode
from tcaudit.kernel import bpf
from tests.bpfasm import R0, R1, exit_, ldx
from tests.conftest import require_privileged

FRAME = bytes(14) + b"\x08\x00" + bytes(40)


def _program(map_fd: int) -> bytes:
    # r1 = &map[0] + 4 (BPF_PSEUDO_MAP_VALUE: imm = fd, second imm = offset); r0 = *(u32 *)r1
    ld = [Insn(0x18, R1.n, 2, 0, map_fd), Insn(0, 0, 0, 0, 4)]
    return encode((*ld, ldx(4, R0, R1, 0), exit_()))


@pytest.fixture()
def maps() -> Iterator[dict[str, int]]:
    require_privileged()
    fds: dict[str, int] = {}
    try:
        value = struct.pack("=II", 0xDEAD, 7)  # the verdict is at offset 4: REDIRECT
        for name, flags, freeze in (
            ("frozen_ro", bpf.BPF_F_RDONLY_PROG, True),
            ("ro_unfrozen", bpf.BPF_F_RDONLY_PROG, False),
            ("frozen_rw", 0, True),
        ):
            fd = bpf.map_create(bpf.BPF_MAP_TYPE_ARRAY, 4, 8, 1, f"tcat_{name}"[:15], flags)
            fds[name] = fd
            bpf.map_update(fd, struct.pack("=I", 0), value)
            if freeze:
                bpf.map_freeze(fd)
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


@pytest.mark.privileged
@pytest.mark.parametrize(
    ("name", "constant"),
    [("frozen_ro", True), ("ro_unfrozen", False), ("frozen_rw", False)],
)
def test_only_frozen_read_only_maps_give_constants(
    maps: dict[str, int], name: str, constant: bool
) -> None:
    require_privileged()
    prog = bpf.prog_load(_program(maps[name]), name=f"tcat_{name}"[:15])
    try:
        seen = bpf.prog_test_run(prog, FRAME).retval
        assert seen == 7
        analysis = VerdictAnalyser().analysis(bpf.prog_info(prog).id)
        assert not isinstance(analysis, str)
        if constant:
            assert analysis.possible == {7}
        else:
            # a map programs or user space may still change: any 32-bit value
            assert analysis.possible is None and analysis.ranges is None
            assert analysis.reason is not None and "map" in analysis.reason
    finally:
        os.close(prog)
