"""A CNI's node-wide policy array, in programs of our own, against the kernel.

The shape real Cilium has (1.12 and 1.16, built from their tags): each endpoint's root
stores its own security identity in ``skb->cb[0]`` and tail-calls, by a packet-chosen
index, through one node-wide prog array into every endpoint's policy program. A policy
program resolves a reserved identity (< 3) through a map, keeps the identity in a
4-byte stack slot (and a buffer's address in another, handed back to
``bpf_skb_load_bytes``, as 1.12.16's ``handle_policy`` does), tells "world"-like
reserved ranges apart with ``identity - 9 > 1``,
looks the identity up with its own endpoint id beside it, and on a miss stores a drop
code in ``cb[1]`` and tail-calls a notify program that returns it.

Every endpoint's identity (20000 + 113k) lies in [16384, 32767], where each of those
tests is decided alike: the scan analyses each policy program with the first tree's
identity and then once for every other tree (``relevance``), instead of once per tree,
and every verdict is still the one each tree's own analysis gives and covers what
BPF_PROG_TEST_RUN returns.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.analysis.insns import Insn, encode
from tcaudit.kernel import bpf
from tests.analysis.conftest import Runs
from tests.analysis.test_patterns_kernel import packets, s32
from tests.bpfasm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R10,
    Item,
    Label,
    add,
    alu,
    and_,
    asm,
    call,
    exit_,
    jmp,
    jmp32,
    ld_map,
    ldx,
    mov,
    mov32,
    st,
    stx,
)
from tests.conftest import require_privileged

N = 5
CB0, CB1 = 48, 52  # __sk_buff.cb[0], cb[1] (the kernel rewrites them into sk_buff)
MARK = 8  # __sk_buff.mark: picks the policy slot
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PROG_ARRAY = 1, 3
MAP_LOOKUP, TAIL_CALL, SKB_LOAD_BYTES = 1, 12, 26


def _root(k: int, policy: int) -> tuple[Insn, ...]:
    """Endpoint k: its identity into cb[0]; k movs make each root a shape of its own (a
    root with its constants on its own, as Cilium's from-container is)."""
    return asm(mov(R6, R1), *[mov(R7, 0)] * k, st(4, R6, CB0, 20000 + 113 * k),
               st(4, R6, CB1, 0), ldx(4, R3, R6, MARK), and_(R3, 7), mov(R1, R6),
               *ld_map(R2, policy), call(TAIL_CALL), mov(R0, 0), exit_())


def _policy(j: int, resolve: int, allow: int, notify: int) -> tuple[Insn, ...]:
    items: list[Item] = [
        mov(R6, R1), ldx(4, R7, R6, CB0),
        jmp32("ge", R7, 3, "known"),  # a reserved identity: resolved through a map
        st(4, R10, -8, 0), mov(R2, R10), add(R2, -8), *ld_map(R1, resolve),
        call(MAP_LOOKUP), jmp("eq", R0, 0, "known"), ldx(4, R7, R0, 0),
        Label("known"), stx(4, R10, -16, R7),  # a 4-byte spill
        # a buffer's address kept in the frame, filled back and handed to a helper that
        # writes there (real handle_policy does both): the spill stays exact
        mov(R2, R10), add(R2, -40), stx(8, R10, -48, R2), ldx(8, R3, R10, -48),
        mov(R1, R6), mov(R2, 0), mov(R4, 4), call(SKB_LOAD_BYTES),
        ldx(4, R7, R10, -16),
        mov32(R1, R7), alu("add", R1, -9, w32=True), jmp32("gt", R1, 1, "check"),
        mov(R0, 2), exit_(),  # reserved 9 and 10
        Label("check"), stx(4, R10, -24, R7), st(4, R10, -20, 300 + j),
        mov(R2, R10), add(R2, -24), *ld_map(R1, allow), call(MAP_LOOKUP),
        jmp("ne", R0, 0, "allowed"),
        st(4, R6, CB1, 2), mov(R1, R6), *ld_map(R2, notify), mov(R3, 0), call(TAIL_CALL),
        mov(R0, 2), exit_(),
        Label("allowed"), mov(R0, 0), exit_(),
    ]
    return asm(*items)


def _notify() -> tuple[Insn, ...]:
    return asm(ldx(4, R0, R1, CB1), exit_())


@pytest.fixture()
def node() -> Iterator[dict[str, list[int]]]:
    require_privileged()
    fds: list[int] = []
    try:
        policy = bpf.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 8, "tcat_policy")
        notify_arr = bpf.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1, "tcat_notify")
        resolve = bpf.map_create(BPF_MAP_TYPE_HASH, 4, 4, 16, "tcat_resolve")
        allow = bpf.map_create(BPF_MAP_TYPE_HASH, 8, 8, 64, "tcat_allow")
        fds += [policy, notify_arr, resolve, allow]
        notify = bpf.prog_load(encode(_notify()), name="tcat_notify")
        fds.append(notify)
        bpf.map_update(notify_arr, struct.pack("=I", 0), struct.pack("=I", notify))
        roots, policies = [], []
        for k in range(1, N + 1):
            pfd = bpf.prog_load(encode(_policy(k, resolve, allow, notify_arr)),
                                name=f"tcat_policy{k}")
            fds.append(pfd)
            policies.append(pfd)
            bpf.map_update(policy, struct.pack("=I", k), struct.pack("=I", pfd))
            rfd = bpf.prog_load(encode(_root(k, policy)), name=f"tcat_root{k}")
            fds.append(rfd)
            roots.append(rfd)
        # endpoint 2 lets its own identity in: one tree accepts on that path
        bpf.map_update(allow, struct.pack("=II", 20000 + 113 * 2, 302), bytes(8))
        yield {"roots": roots, "policies": policies}
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.privileged
def test_the_node_wide_policy_programs_are_analysed_once_for_every_other_tree(
        node: dict[str, list[int]], runs: Runs) -> None:
    roots = [bpf.prog_info(fd).id for fd in node["roots"]]
    policy_maps = {bpf.prog_info(fd).map_ids for fd in node["policies"]}
    own = {r: VerdictAnalyser(share=False).analysis(r) for r in roots}
    runs.clear()
    shared = VerdictAnalyser()
    shared.prefetch(roots)
    for fd, r in zip(node["roots"], roots, strict=True):
        got = shared.analysis(r)
        mine = own[r]
        assert not isinstance(got, str) and not isinstance(mine, str)
        assert got.possible == mine.possible == frozenset({0, 2}), (got.reason, mine.reason)
        seen = {s32(bpf.prog_test_run(fd, d, ctx=c).retval) for d, c in packets(r)}
        assert seen <= got.possible
    assert shared.shapes is not None and shared.shapes.relevance.dropped >= 1
    # the policy family (one shape, five copies): with the first tree's identity, then
    # once with its bucket for the four other trees (it was once per tree)
    entries = [cb for maps, cb in runs if maps in policy_maps and cb]
    assert len(entries) == 2, entries
    identities = {v for cb in entries for off, _size, v in cb if off >= 0}
    assert any(not isinstance(v, frozenset) for v in identities)  # a bucket, not a value


@pytest.mark.privileged
def test_a_worker_process_gives_the_answers_one_process_gives(
        node: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The five trees are one family of roots: the first is analysed before the fork,
    the other four dealt out between this process and a worker (``workers``)."""
    from tcaudit.analysis import workers
    from tests.analysis.test_shapes import same

    monkeypatch.setattr(workers, "MIN_SHARE", 0)  # (the trees are small)
    roots = [bpf.prog_info(fd).id for fd in node["roots"]]
    alone = VerdictAnalyser(workers=1)
    alone.prefetch(roots)
    two = VerdictAnalyser(workers=2)
    two.prefetch(roots)
    assert len(two.worker_peaks_kb) == 1 and len(two._sent) == 2
    for r in roots:
        a, b = alone.analysis(r), two.analysis(r)
        assert not isinstance(a, str) and not isinstance(b, str)
        same(a, b)
        assert b.possible == frozenset({0, 2})
