"""Decoder and disassembler tests."""

from __future__ import annotations

import struct

import pytest

from tcaudit.analysis import insns as I
from tcaudit.analysis.insns import Insn, decode, disassemble, encode
from tests.bpfasm import (
    HELPERS,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    Label,
    alu,
    asm,
    atomic,
    call,
    end,
    exit_,
    gotol,
    ja,
    jmp,
    jmp32,
    kfunc_call,
    ld_abs,
    ld_imm64,
    ld_ind,
    ld_map,
    ld_map_value,
    ldx,
    may_goto,
    mov,
    mov32,
    movsx,
    neg,
    pseudo_call,
    st,
    stx,
    tail_call,
)


def raw(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def text(*items: object) -> list[str]:
    return disassemble(asm(*items), HELPERS.get)  # type: ignore[arg-type]


def one(item: object) -> str:
    return text(item)[0]


# ---------------------------------------------------------------- decoding


def test_decode_fields_and_signedness() -> None:
    data = raw(0xB7, 3, 0, -2, -1) + raw(0x1F, 0xA, 0x9, 0x7FFF, 0x7FFFFFFF)
    a, b = decode(data)
    assert a == Insn(0xB7, 3, 0, -2, -1)
    assert b == Insn(0x1F, 10, 9, 32767, 2147483647)
    assert decode(b"") == ()


def test_decode_rejects_partial_slot() -> None:
    with pytest.raises(ValueError):
        decode(b"\x00" * 12)


def test_encode_roundtrip() -> None:
    prog = asm(
        ld_imm64(R1, 0x1122334455667788),
        mov(R0, -5),
        jmp("sgt", R1, -3, 1),
        exit_(),
        stx(8, R10, -8, R1),
        exit_(),
    )
    assert decode(encode(prog)) == prog
    assert len(encode(prog)) == 8 * len(prog)


def test_ld_imm64_two_slots() -> None:
    prog = asm(ld_imm64(R2, 0xFFFFFFFF_00000001), exit_())
    assert len(prog) == 3
    assert prog[0].code == 0x18 and prog[0].imm == 1 and prog[1].imm == -1
    assert I.is_ldimm64(prog[0]) and not I.is_ldimm64(prog[1])
    assert I.ldimm64_value(prog[0], prog[1]) == 0xFFFFFFFF_00000001
    lines = disassemble(prog, HELPERS.get)
    assert lines == ["r2 = 0xffffffff00000001", "", "exit"]


def test_ld_imm64_pseudo_sources() -> None:
    assert text(ld_map(R1, 12)) == ["r1 = map[id:12]", ""]
    assert text(ld_map_value(R1, 298, 16)) == ["r1 = map[id:298][0]+16", ""]
    assert text(ld_imm64(R1, 3, src=I.BPF_PSEUDO_MAP_IDX, imm2=0))[0] == "r1 = map[idx:3]"
    assert text(ld_imm64(R1, 5, src=I.BPF_PSEUDO_FUNC, imm2=0))[0] == "r1 = func[pc+5]"
    assert text(ld_imm64(R1, 9, src=I.BPF_PSEUDO_BTF_ID, imm2=0))[0] == "r1 = btf_id[9]"


# ---------------------------------------------------------------- ALU


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (mov(R0, 0), "r0 = 0"),
        (mov(R0, -1), "r0 = -1"),
        (mov32(R0, 7), "w0 = 7"),
        (mov(R6, R1), "r6 = r1"),
        (mov32(R2, R3), "w2 = w3"),
        (movsx(R1, R2, 8), "r1 = (s8)r2"),
        (movsx(R1, R2, 16, w32=True), "w1 = (s16)w2"),
        (movsx(R1, R2, 32), "r1 = (s32)r2"),
        (alu("add", R1, 5), "r1 += 5"),
        (alu("sub", R1, R2), "r1 -= r2"),
        (alu("mul", R1, 3, w32=True), "w1 *= 3"),
        (alu("div", R1, R2), "r1 /= r2"),
        (alu("sdiv", R1, R2), "r1 s/= r2"),
        (alu("mod", R1, 10), "r1 %= 10"),
        (alu("smod", R1, -3, w32=True), "w1 s%= -3"),
        (alu("or", R1, 1), "r1 |= 1"),
        (alu("and", R1, 255), "r1 &= 255"),
        (alu("xor", R1, R1), "r1 ^= r1"),
        (alu("lsh", R0, 1), "r0 <<= 1"),
        (alu("rsh", R0, 3, w32=True), "w0 >>= 3"),
        (alu("arsh", R0, 63), "r0 s>>= 63"),
        (neg(R3), "r3 = -r3"),
        (neg(R3, w32=True), "w3 = -w3"),
        (end(R1, 16, "be"), "r1 = be16 r1"),
        (end(R1, 32, "le"), "r1 = le32 r1"),
        (end(R1, 64, "swap"), "r1 = bswap64 r1"),
    ],
)
def test_alu_text(item: object, expected: str) -> None:
    assert one(item) == expected


def test_alu_codes() -> None:
    assert asm(mov(R0, 2))[0].code == 0xB7
    assert asm(mov32(R0, 2))[0].code == 0xB4
    assert asm(mov(R0, R1))[0].code == 0xBF
    assert asm(alu("add", R1, R2))[0].code == 0x0F
    assert asm(alu("sdiv", R1, 2))[0].off == 1
    assert asm(end(R1, 16, "be"))[0].code == 0xDC
    assert asm(end(R1, 16, "swap"))[0].code == 0xD7


def test_addr_space_cast_text() -> None:
    insn = Insn(0xBF, 1, 2, 1, 1 << 16)
    assert disassemble([insn], HELPERS.get) == ["r1 = addr_space_cast(r2, 1, 0)"]


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (ldx(4, R0, R1, 76), "r0 = *(u32 *)(r1 +76)"),
        (ldx(8, R2, R10, -8), "r2 = *(u64 *)(r10 -8)"),
        (ldx(1, R2, R3, 0), "r2 = *(u8 *)(r3 +0)"),
        (ldx(2, R2, R3, 2, sx=True), "r2 = *(s16 *)(r3 +2)"),
        (stx(8, R10, -16, R6), "*(u64 *)(r10 -16) = r6"),
        (stx(2, R1, 4, R2), "*(u16 *)(r1 +4) = r2"),
        (st(4, R10, -4, -1), "*(u32 *)(r10 -4) = -1"),
        (atomic(8, "add", R10, -8, R1), "lock *(u64 *)(r10 -8) += r1"),
        (atomic(4, "or", R2, 0, R1), "lock *(u32 *)(r2 +0) |= r1"),
        (
            atomic(8, "add", R2, 8, R1, fetch=True),
            "r1 = atomic64_fetch_add((u64 *)(r2 +8), r1)",
        ),
        (
            atomic(4, "xor", R2, 0, R3, fetch=True),
            "w3 = atomic_fetch_xor((u32 *)(r2 +0), w3)",
        ),
        (atomic(8, "xchg", R2, 0, R3), "r3 = atomic64_xchg((u64 *)(r2 +0), r3)"),
        (
            atomic(8, "cmpxchg", R2, -8, R3),
            "r0 = atomic64_cmpxchg((u64 *)(r2 -8), r0, r3)",
        ),
        (atomic(8, "load_acq", R0, 0, R1), "r0 = load_acquire((u64 *)(r1 +0))"),
        (atomic(4, "store_rel", R1, 4, R2), "store_release((u32 *)(r1 +4), r2)"),
        (ld_abs(2, 12), "r0 = *(u16 *)skb[12]"),
        (ld_ind(1, R3, 14), "r0 = *(u8 *)skb[r3 + 14]"),
    ],
)
def test_memory_text(item: object, expected: str) -> None:
    assert one(item) == expected


# ---------------------------------------------------------------- jumps and calls


def test_jump_text_and_offsets() -> None:
    lines = text(
        jmp("gt", R1, 5, "end"),
        jmp("ne", R1, R2, "end"),
        jmp32("slt", R1, -1, "end"),
        jmp("set", R3, 1, "end"),
        jmp32("le", R1, R2, "end"),
        ja("end"),
        gotol("end"),
        may_goto("end"),
        Label("end"),
        exit_(),
    )
    assert lines == [
        "if r1 > 0x5 goto pc+7",
        "if r1 != r2 goto pc+6",
        "if w1 s< 0xffffffff goto pc+5",
        "if r3 & 0x1 goto pc+4",
        "if w1 <= w2 goto pc+3",
        "goto pc+2",
        "gotol pc+1",
        "may_goto pc+0",
        "exit",
    ]


def test_backward_jump_is_negative() -> None:
    prog = asm(Label("top"), mov(R0, 0), jmp("eq", R0, 0, "top"), exit_())
    assert prog[1].off == -2
    assert text(Label("top"), mov(R0, 0), jmp("eq", R0, 0, "top"))[1] == (
        "if r0 == 0x0 goto pc-2"
    )


def test_call_text() -> None:
    assert one(call(23)) == "call bpf_redirect#23"
    assert one(tail_call()) == "call bpf_tail_call#12"
    assert disassemble(asm(call(99999)), lambda imm: None) == ["call unknown#99999"]
    assert disassemble(asm(tail_call()), lambda imm: None) == ["call bpf_tail_call#12"]
    assert one(kfunc_call(1234)) == "call kernel-function#1234"
    assert text(pseudo_call("f"), exit_(), Label("f"), exit_())[0] == "call pc+1"
    jit = asm(pseudo_call("f", jit=True, index=1), exit_(), Label("f"), exit_())
    assert jit[0].off == 1 and jit[0].imm == 1
    assert disassemble(jit, HELPERS.get)[0] == "call pc+1"
    assert one(exit_()) == "exit"


def test_opcode_prefix() -> None:
    assert disassemble(asm(mov(R0, 0), exit_()), HELPERS.get, opcodes=True) == [
        "(b7) r0 = 0",
        "(95) exit",
    ]


def test_invalid_opcodes_do_not_raise() -> None:
    bad = [Insn(0xFF, 0, 0, 0, 0), Insn(0x21, 0, 0, 0, 0), Insn(0xE5, 0, 3, 0, 0)]
    lines = disassemble(bad, HELPERS.get)
    assert all(line.startswith("invalid insn") for line in lines)


def test_one_line_per_slot() -> None:
    prog = asm(ld_imm64(R1, 1), ld_map(R2, 3), mov(R0, 0), exit_())
    lines = disassemble(prog, HELPERS.get)
    assert len(lines) == len(prog) == 6
    assert lines[1] == "" and lines[3] == ""


def test_every_class_decodes() -> None:
    classes = {insn.code & 7 for insn in asm(
        ld_imm64(R1, 1), ldx(4, R0, R1, 0), st(4, R10, -4, 0), stx(4, R10, -4, R0),
        mov32(R0, 0), jmp("eq", R0, 0, 0), jmp32("eq", R0, 0, 0), mov(R0, 0),
    )}
    assert classes == set(range(8))
