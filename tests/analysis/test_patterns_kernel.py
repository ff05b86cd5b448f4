"""Real vendors' code shapes, in programs of our own, against the kernel.

tests/bpf/patterns.c (compiled by bcc) and a few raw-bytecode programs (built here
with tests/bpfasm.py: shapes C cannot express) are loaded, read back from the kernel
and analysed; each is then run with BPF_PROG_TEST_RUN over a few hundred generated
frames and ``__sk_buff`` contexts. For every program the test states the truth read
off its code, and checks three things:

* soundness: every value the kernel returned is covered by the answer;
* definiteness: the answer is not "unknown";
* exactness: the answer is the stated truth (a set, ranges, or, where the truth holds
  a whole errno range the tests cannot reach, its meaning in direct-action mode).

Everything runs twice: as loaded normally, and loaded with ``net.core.bpf_jit_harden=2``
(constant blinding rewrites immediates through r11; the sysctl is set only while the
programs load and is restored even on failure).
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcaudit.analysis import insns as I
from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.analysis.meaning import Mode, effective
from tcaudit.kernel import bpf
from tcaudit.lab.sandbox import Sandbox
from tests import bpfasm as A
from tests.bpfasm import R0, R1, R2, R3, R4, R5, R6, R8, R10, Label
from tests.conftest import require_privileged

PATTERNS = Path(__file__).resolve().parents[1] / "bpf" / "patterns.c"
HARDEN = Path("/proc/sys/net/core/bpf_jit_harden")
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
EFAULT = 14
MAX_ERRNO = 4095
PACKETS = 480

# -- the answer, read the way the brief defines it ------------------------------------


def ranges_of(analysis: object) -> tuple[tuple[int, int], ...] | None:
    return getattr(analysis, "ranges", None)


def definite(analysis: object) -> bool:
    """The answer says something: a set or ranges (not "unknown")."""
    return getattr(analysis, "possible", None) is not None or ranges_of(analysis) is not None


def covers(analysis: object, value: int) -> bool:
    """Does the answer admit ``value`` (signed 32-bit)? Unknown admits everything."""
    possible = getattr(analysis, "possible", None)
    ranges = ranges_of(analysis)
    if possible is None and ranges is None:
        return True
    if possible is not None and value in possible:
        return True
    return any(lo <= value <= hi for lo, hi in ranges or ())


def words(analysis: object, mode: Mode = "direct-action") -> tuple[str, ...] | None:
    """What the answer means where attached; None when unknown.

    Every value with a meaning of its own lies in [-1, 8], so a range is represented by
    the values it holds in [-2, 9] plus its ends (anything else means what -2 means)."""
    possible = getattr(analysis, "possible", None)
    if possible is not None:
        return effective(frozenset(possible), mode)
    ranges = ranges_of(analysis)
    if ranges is None:
        return None
    sample: set[int] = set()
    for lo, hi in ranges:
        sample.update({lo, hi}, range(max(lo, -2), min(hi, 9) + 1))
    return effective(frozenset(sample), mode)


def bounds(analysis: object) -> tuple[int, int] | None:
    """Smallest and largest value the answer admits (None when unknown)."""
    possible = getattr(analysis, "possible", None)
    ranges = ranges_of(analysis)
    if possible is not None and possible:
        return min(possible), max(possible)
    if ranges:
        return ranges[0][0], ranges[-1][1]
    return None


def s32(value: int) -> int:
    signed: int = struct.unpack("=i", struct.pack("=I", value & 0xFFFFFFFF))[0]
    return signed


def uses_r11(fd: int) -> bool:
    """Does the xlated code use the kernel's scratch register BPF_REG_AX?"""
    xlated = bpf.prog_info(fd, with_code=True).xlated or b""
    return any(11 in (insn.dst, insn.src) for insn in I.decode(xlated))


@contextlib.contextmanager
def jit_harden(level: int | None, sysctl: Path = HARDEN) -> Iterator[None]:
    """net.core.bpf_jit_harden = level inside the block (None: leave it alone); the old
    value is read first and put back however the block ends."""
    if level is None:
        yield
        return
    old = sysctl.read_text().strip()
    sysctl.write_text(f"{level}\n")
    try:
        yield
    finally:
        sysctl.write_text(f"{old}\n")


# -- inputs -----------------------------------------------------------------------------

# struct __sk_buff offsets of the fields BPF_PROG_TEST_RUN takes from ctx_in
CTX_MARK, CTX_PRIORITY, CTX_CB, CTX_TSTAMP, CTX_SIZE = 8, 32, 48, 152, 160


def packets(seed: int, count: int = PACKETS) -> Iterator[tuple[bytes, bytes]]:
    """(frame, __sk_buff context): ARP, IPv4 (TCP/UDP/ICMP/GRE/other), IPv6, junk.

    Frames are at least 14 bytes and IPv4 ones at least 34 (TEST_RUN refuses shorter);
    UDP ports favour 53 and the 1000-1200 window; marks favour small values; cb[] and
    tstamp are random (an earlier filter could have left anything in cb)."""
    rng = random.Random(seed)
    for i in range(count):
        kind = rng.choice(["arp", "ipv4", "ipv4", "ipv4", "ipv6", "junk"])
        if kind == "ipv4":
            size = rng.choice([34, 35, 41, 42, 60, 64, 100, 200])
            ethertype = b"\x08\x00"
        elif kind == "ipv6":
            size = rng.choice([60, 64, 100])
            ethertype = b"\x86\xdd"
        elif kind == "arp":
            size = rng.choice([14, 15, 42, 60])
            ethertype = b"\x08\x06"
        else:
            size = rng.choice([14, 15, 20, 60, 400])
            ethertype = rng.choice([b"\x81\x00", b"\x00\x08", rng.randbytes(2)])
            if ethertype in (b"\x08\x00", b"\x86\xdd"):
                ethertype = b"\x88\xb5"
        frame = bytearray(rng.randbytes(size))
        frame[12:14] = ethertype
        if kind == "ipv4":
            frame[14] = 0x45
            frame[23] = rng.choice([1, 6, 17, 17, 47, rng.getrandbits(8)])
            if size >= 38:
                port = rng.choice(
                    [53, 999, 1000, 1200, 1201, rng.randint(1000, 1200), rng.getrandbits(16)]
                )
                frame[36:38] = struct.pack("!H", port)
        mark = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 0x1FF, rng.getrandbits(9), rng.getrandbits(32)])
        if i < 16:
            mark = i
        ctx = bytearray(CTX_SIZE)
        struct.pack_into("=I", ctx, CTX_MARK, mark)
        struct.pack_into("=I", ctx, CTX_PRIORITY, rng.getrandbits(32))
        cb1 = rng.choice([0, 2, 7, rng.getrandbits(32), 0x80000000, 0x7FFFFFFF])
        cb = [rng.getrandbits(32) for _ in range(5)]
        cb[1] = cb1
        struct.pack_into("=5I", ctx, CTX_CB, *cb)
        tstamp = rng.choice([0, 1, 1_000_000, 1_000_001, rng.getrandbits(20), rng.getrandbits(63)])
        struct.pack_into("=Q", ctx, CTX_TSTAMP, tstamp)
        yield bytes(frame), bytes(ctx)


def observe(fd: int, seed: int) -> set[int]:
    return {s32(bpf.prog_test_run(fd, d, ctx=c).retval) for d, c in packets(seed)}


# -- raw bytecode: the four stack-pointer provenance shapes ---------------------------
# Each keeps its verdict in the slot r10-16 (initialised to TC_ACT_OK) and changes it
# only through a frame pointer that went through memory (the slot r10-8) or through an
# atomic exchange; an analysis that forgets where that pointer points misses the value
# stored through it. The mark (ctx offset 8) decides whether the store happens.


def prov_join() -> tuple[I.Insn, ...]:
    """Only one path of a join saved r10-16 (the other r10-24); the verdict is
    stored through the pointer reloaded after the join. Truth {OK, SHOT}."""
    return A.asm(
        A.st(8, R10, -16, 0),
        A.st(8, R10, -24, 0),
        A.ldx(4, R2, R1, CTX_MARK),
        A.mov(R3, R10),
        A.jmp("set", R2, 1, "other"),
        A.add(R3, -16),
        A.stx(8, R10, -8, R3),
        A.ja("join"),
        Label("other"),
        A.add(R3, -24),
        A.stx(8, R10, -8, R3),
        Label("join"),
        A.ldx(8, R4, R10, -8),
        A.st(4, R4, 0, 2),
        A.ldx(4, R0, R10, -16),
        A.exit_(),
    )


def prov_helper() -> tuple[I.Insn, ...]:
    """bpf_skb_load_bytes() into a buffer below the saved pointer, between the save
    and the reload. Truth {OK, REDIRECT}."""
    return A.asm(
        A.mov(R6, R1),
        A.st(8, R10, -16, 0),
        A.mov(R3, R10),
        A.add(R3, -16),
        A.stx(8, R10, -8, R3),
        A.mov(R1, R6),
        A.mov(R2, 0),
        A.mov(R3, R10),
        A.add(R3, -32),
        A.mov(R4, 4),
        A.call("skb_load_bytes"),
        A.ldx(4, R2, R6, CTX_MARK),
        A.ldx(8, R4, R10, -8),
        A.jmp("set", R2, 1, "skip"),
        A.st(4, R4, 0, 7),
        Label("skip"),
        A.ldx(4, R0, R10, -16),
        A.exit_(),
    )


def prov_var_store() -> tuple[I.Insn, ...]:
    """A store at r10-48 + (mark & 8), a variable but bounded offset that misses the
    saved pointer, between the save and the reload. Truth {OK, SHOT}."""
    return A.asm(
        A.st(8, R10, -16, 0),
        A.mov(R3, R10),
        A.add(R3, -16),
        A.stx(8, R10, -8, R3),
        A.ldx(4, R2, R1, CTX_MARK),
        A.mov(R3, R2),
        A.and_(R3, 8),
        A.mov(R5, R10),
        A.add(R5, -48),
        A.add(R5, R3),
        A.st(8, R5, 0, 0),
        A.ldx(8, R4, R10, -8),
        A.jmp("set", R2, 1, "skip"),
        A.st(4, R4, 0, 2),
        Label("skip"),
        A.ldx(4, R0, R10, -16),
        A.exit_(),
    )


def prov_xchg() -> tuple[I.Insn, ...]:
    """An atomic exchange on the slot hands the saved pointer back in a register.
    Truth {OK, REDIRECT}."""
    return A.asm(
        A.st(8, R10, -16, 0),
        A.mov(R3, R10),
        A.add(R3, -16),
        A.stx(8, R10, -8, R3),
        A.mov(R5, 0),
        A.atomic(8, "xchg", R10, -8, R5),
        A.ldx(4, R2, R1, CTX_MARK),
        A.jmp("set", R2, 1, "skip"),
        A.st(4, R5, 0, 7),
        Label("skip"),
        A.ldx(4, R0, R10, -16),
        A.exit_(),
    )


def err32_signed() -> tuple[I.Insn, ...]:
    """A helper's 0 or -errno moved to a 32-bit register, tested with a signed JMP32
    (`if w8 s< 0`) and returned when it is not negative and not SHOT (the shape clang
    gives an `int ret` error path of real datapaths). The zero-extended register holds
    {0} or [2^32 - 4095, 2^32 - 1]: only its sign-extended view says which side of the
    test each lies on. Truth {OK, SHOT}."""
    return A.asm(
        A.mov(R6, R1),
        A.ldx(4, R2, R6, CTX_MARK),
        A.and_(R2, 0x1FF),
        A.mov(R1, R6),
        A.mov(R3, R10),
        A.add(R3, -8),
        A.mov(R4, 4),
        A.call("skb_load_bytes"),
        A.mov32(R8, R0),
        A.jmp32("slt", R8, 0, "drop"),
        A.jmp32("ne", R8, 2, "out"),
        Label("drop"),
        A.mov32(R8, 2),
        Label("out"),
        A.mov32(R0, R8),
        A.exit_(),
    )


RAW: dict[str, Callable[[], tuple[I.Insn, ...]]] = {
    "err32_signed": err32_signed,
    "prov_join": prov_join,
    "prov_helper": prov_helper,
    "prov_var_store": prov_var_store,
    "prov_xchg": prov_xchg,
}

# -- the truth --------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What a program can return, read off its code.

    values: the exact set; ranges: the exact ranges (more than 64 values); within,
    including and meaning: an errno-carrying truth lies within these bounds, the answer
    must include these values, admit nothing above the upper bound and mean
    ``meaning``; anything: any 32-bit value (cb[] never written)."""

    values: frozenset[int] | None = None
    ranges: tuple[tuple[int, int], ...] | None = None
    within: tuple[int, int] | None = None
    including: frozenset[int] = frozenset()
    meaning: tuple[str, ...] | None = None
    anything: bool = False


def exact(*values: int) -> Truth:
    return Truth(values=frozenset(values))


TRUTH: dict[str, Truth] = {
    # 1. r11 from the tstamp context rewrite; the tstamp decides
    "tstamp_verdict": exact(0, 2),
    # 2. exit codes in cb[1] across a tail call to cb_notify
    "cb_root": exact(-1, 0, 2, 7),
    "cb_two_sites": exact(-1, 0, 2, 7),
    "cb_unset": Truth(anything=True),
    "cb_notify": Truth(anything=True),
    # 3. helper errors returned (0 or -EFAULT; any -errno is justified) and compared
    "load_err": Truth(
        within=(-MAX_ERRNO, 0), including=frozenset({0, -EFAULT}), meaning=("accept", "continue")
    ),
    "load_err_keep": Truth(
        within=(-MAX_ERRNO, 0),
        including=frozenset({-1, 0, -EFAULT}),
        meaning=("accept", "continue"),
    ),
    "load_cmp": exact(0, 2),
    # 4. branch-heavy parsing; values bounded by masks and comparisons
    "by_proto": exact(-1, 0, 2, 3, 4, 7),
    "masked": Truth(ranges=((100, 227),)),
    "port_window": Truth(ranges=((0, 0), (1000, 1200))),
    # 5. bpf_redirect()'s own result
    "redirect_flags": exact(2, 7),
    # 6. stack-pointer provenance (raw bytecode)
    "prov_join": exact(0, 2),
    "prov_helper": exact(0, 7),
    "prov_var_store": exact(0, 2),
    "prov_xchg": exact(0, 7),
    "err32_signed": exact(0, 2),
}
C_PROGRAMS = tuple(name for name in TRUTH if name not in RAW)
NAMES = tuple(TRUTH)


# -- fixtures ---------------------------------------------------------------------------


@dataclass
class Loaded:
    harden: int | None
    fds: dict[str, int]
    seen: dict[str, set[int]]

    def observed(self, name: str) -> set[int]:
        if name not in self.seen:
            self.seen[name] = observe(self.fds[name], seed=sum(map(ord, name)))
        return self.seen[name]

    def analysis(self, name: str) -> object:
        result = VerdictAnalyser().analysis(bpf.prog_info(self.fds[name]).id)
        assert not isinstance(result, str), result
        return result


@pytest.fixture(scope="module", params=[None, 2], ids=["plain", "harden2"])
def loaded(request: pytest.FixtureRequest) -> Iterator[Loaded]:
    """Every pattern program, loaded with bpf_jit_harden as the param says."""
    require_privileged()
    box = Sandbox(prefix="tcahc")
    try:
        with jit_harden(request.param):
            programs, _ = box.load_tree(PATTERNS, C_PROGRAMS, "cb_calls", {"cb_notify": 0})
            fds = {name: prog.fd for name, prog in programs.items()}
            for name, build in RAW.items():
                fds[name] = box.load_raw(I.encode(build()), name).fd
        yield Loaded(request.param, fds, {})
    finally:
        box.close()


# -- the checks -------------------------------------------------------------------------


def check_sound(analysis: object, seen: set[int], name: str) -> None:
    """Every value the kernel returned is covered by the answer."""
    missed = sorted(v for v in seen if not covers(analysis, v))
    assert not missed, f"{name}: kernel returned {missed}, answer {got_text(analysis)}"


def check_definite(analysis: object, name: str) -> None:
    assert definite(analysis), f"{name}: unknown ({getattr(analysis, 'reason', None)})"


def got_text(analysis: object) -> str:
    return (
        f"possible={getattr(analysis, 'possible', None)} ranges={ranges_of(analysis)}"
        f" reason={getattr(analysis, 'reason', None)}"
    )


def check_exact(truth: Truth, analysis: object, seen: set[int], name: str) -> None:
    """The answer is the stated truth (and the kernel shows that truth)."""
    possible = getattr(analysis, "possible", None)
    ranges = ranges_of(analysis)
    got = f"{name}: {got_text(analysis)}"
    if truth.values is not None:
        assert seen == truth.values, f"{name}: the kernel returned {sorted(seen)}"
        assert possible == truth.values, got
    elif truth.ranges is not None:
        assert all(any(lo <= v <= hi for lo, hi in truth.ranges) for v in seen), seen
        assert len(seen) > 10, seen
        assert ranges == truth.ranges, got
        assert possible is None  # more than 64 values
    elif truth.within is not None:
        lo, hi = truth.within
        assert truth.including <= seen <= set(range(lo, hi + 1)), seen
        assert definite(analysis), got
        assert all(covers(analysis, v) for v in truth.including), got
        # no positive value (the words alone would not catch, say, 1 or 3); how far down
        # the errnos go is the helper contract's business (-MAX_ERRNO is what is justified)
        low_high = bounds(analysis)
        assert low_high is not None and low_high[1] <= hi, got
        assert words(analysis) == truth.meaning, got
    else:
        assert truth.anything
        assert len(seen) > 5  # cb from the context comes back
        # unknown, or every 32-bit value: never a small definite set
        assert possible is None, got
        assert ranges is None or ranges == ((S32_MIN, S32_MAX),), got


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


@pytest.mark.privileged
def test_tstamp_read_goes_through_r11(loaded: Loaded) -> None:
    """The kernel's tstamp rewrite (bpf_convert_tstamp_read) uses BPF_REG_AX."""
    require_privileged()
    assert uses_r11(loaded.fds["tstamp_verdict"])
    analysis = loaded.analysis("tstamp_verdict")
    assert getattr(analysis, "possible", None) == {0, 2}
    assert effective(frozenset({0, 2}), "direct-action") == ("accept", "drop")


@pytest.mark.privileged
def test_blinding_rewrites_immediates_through_r11(loaded: Loaded) -> None:
    """With bpf_jit_harden=2 the immediates of root-loaded programs go through r11."""
    require_privileged()
    with_r11 = {name for name, fd in loaded.fds.items() if uses_r11(fd)}
    if loaded.harden is None:
        assert with_r11 == {"tstamp_verdict"}
    else:
        # every program with a non-zero immediate (cb_notify and redirect_flags have none)
        assert with_r11 == set(NAMES) - {"cb_notify", "redirect_flags"}


@pytest.mark.privileged
def test_cb_tail_calls_reach_the_notify_program(loaded: Loaded) -> None:
    require_privileged()
    notify = bpf.prog_info(loaded.fds["cb_notify"]).id
    for root in ("cb_root", "cb_two_sites", "cb_unset"):
        analysis = loaded.analysis(root)
        targets = {t for site in getattr(analysis, "tail_calls", ()) for t in site.targets}
        assert notify in targets, f"{root}: {analysis}"


def test_harden_sysctl_is_restored(tmp_path: Path) -> None:
    """jit_harden puts the old value back even when the block raises."""
    fake = tmp_path / "bpf_jit_harden"
    fake.write_text("0\n")
    with pytest.raises(RuntimeError), jit_harden(2, fake):
        assert fake.read_text().strip() == "2"
        raise RuntimeError("load failed")
    assert fake.read_text().strip() == "0"
