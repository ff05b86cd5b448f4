"""The pure rtnetlink decoders on recorded real dumps (tests/kernel/fixtures, captured from
a sandbox: a veth with clsact, a cls_bpf filter, a u32 rule, a classic-BPF filter, and
the notifications of a filter added, deleted and a pref flushed), on hand-made edge
cases, and fuzzed: truncated or mutated bytes give a record or DecodeError, nothing
else. The socket side (errors, dumps that end in an error or stay interrupted) runs on
a scripted socket."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcaudit.kernel import rtnl
from tcaudit.kernel.rtnl_codec import (
    NLA_F_NET_BYTEORDER,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP_INTR,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    RTM_DELTFILTER,
    RTM_NEWTFILTER,
    DecodeError,
    decode_notifications,
    done_errno,
    error_from,
    filter_from,
    link_from,
    nla,
    parse_nlas,
    qdisc_from,
    split_messages,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def grams(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (FIXTURES / f"{name}.hex").read_text().split()]


def messages(name: str) -> list[bytes]:
    """The payload messages of a recorded dump (without its NLMSG_DONE)."""
    return [
        chunk
        for gram in grams(name)
        for mtype, _f, _s, _p, chunk in split_messages(gram)
        if mtype != NLMSG_DONE
    ]


def test_a_recorded_link_dump() -> None:
    links = [link_from(chunk) for chunk in messages("links")]
    assert [(link.name, link.kind) for link in links] == [("lo", None), ("lxc0", "veth")]
    assert all(link.ifindex > 0 for link in links)


def test_a_recorded_qdisc_dump() -> None:
    kinds = {q.kind for q in (qdisc_from(chunk) for chunk in messages("qdiscs"))}
    assert "clsact" in kinds


def test_recorded_filter_dumps() -> None:
    ingress = [f for f in (filter_from(c) for c in messages("filters-ingress")) if f]
    assert [(f.pref, f.kind) for f in ingress] == [(1, "bpf"), (20, "u32")]
    bpf = ingress[0].bpf
    assert bpf is not None and bpf.name == "bpf_lxc.o:[from-container]"
    assert bpf.direct_action and bpf.prog_id and bpf.tag and len(bpf.tag) == 16
    assert ingress[1].classid == 0x10001 and ingress[1].protocol == 0x0800
    [classic] = [f for f in (filter_from(c) for c in messages("filters-egress")) if f]
    assert classic.pref == 40 and classic.bpf is not None
    assert classic.bpf.classic_ops == ((6, 0, 0, 65535),)


def test_recorded_notifications() -> None:
    seen = [n for gram in grams("notifications") for n in decode_notifications(gram)]
    assert [(n.type, n.filter.pref if n.filter else None) for n in seen] == [
        (RTM_NEWTFILTER, 5),
        (RTM_DELTFILTER, 5),
        (RTM_DELTFILTER, None),
    ]
    assert seen[0].filter and seen[0].filter.bpf
    assert seen[0].filter.bpf.name == "cil_from_container-lxc0"
    assert seen[2].bulk_delete is not None and seen[2].bulk_delete[2] == 20  # pref 20 flushed


def _message(mtype: int, flags: int, payload: bytes, seq: int = 1) -> bytes:
    raw = NLMSGHDR.pack(16 + len(payload), mtype, flags, seq, 0) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_the_attribute_type_drops_both_flag_bits() -> None:
    raw = nla(7 | NLA_F_NET_BYTEORDER, b"abc\0") + nla(3 | (1 << 15), b"")
    assert set(parse_nlas(raw)) == {7, 3}


@pytest.mark.parametrize(
    "data",
    [
        b"\x10\x00\x00",  # a header shorter than 16 bytes
        NLMSGHDR.pack(8, 16, 0, 1, 0) + b"\0" * 8,  # one claiming less than a header
        NLMSGHDR.pack(64, 16, 0, 1, 0) + b"\0" * 16,  # running past the datagram
    ],
)
def test_broken_headers_are_errors_not_a_short_dump(data: bytes) -> None:
    with pytest.raises(DecodeError, match="netlink"):
        list(split_messages(data))


def test_short_payloads_are_decode_errors() -> None:
    header = NLMSGHDR.pack(20, RTM_NEWTFILTER, 0, 1, 0)
    for decode in (link_from, qdisc_from, filter_from):
        with pytest.raises(DecodeError, match="malformed"):
            decode(header + b"\0" * 4)
    with pytest.raises(DecodeError, match="attribute"):
        parse_nlas(struct.pack("=HH", 40, 1) + b"abcd")


def test_an_error_with_the_kernels_own_text() -> None:
    text = b"Filter with specified priority/protocol not found\0"
    echoed = NLMSGHDR.pack(36, RTM_DELTFILTER, 5, 1, 0)
    payload = struct.pack("=i", -2) + echoed + nla(1, text)
    chunk = _message(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, payload)
    assert error_from(chunk, NLM_F_CAPPED | NLM_F_ACK_TLVS) == (2, text[:-1].decode())
    assert error_from(_message(NLMSG_ERROR, 0, struct.pack("=i", 0) + echoed), 0) == (0, None)


def test_done_carries_the_dumps_errno() -> None:
    assert done_errno(_message(NLMSG_DONE, 0, struct.pack("=i", -16))) == 16
    assert done_errno(_message(NLMSG_DONE, 0, struct.pack("=i", 0))) == 0
    assert done_errno(NLMSGHDR.pack(16, NLMSG_DONE, 0, 1, 0)) == 0


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "links": link_from,
    "qdiscs": qdisc_from,
    "filters-ingress": filter_from,
    "filters-egress": filter_from,
}


def _decode_all(name: str, data: bytes) -> None:
    if name == "notifications":
        decode_notifications(data)
        return
    for mtype, _f, _s, _p, chunk in split_messages(data):
        if mtype != NLMSG_DONE:
            DECODERS[name](chunk)


RECORDED = [(name, gram) for name in [*DECODERS, "notifications"] for gram in grams(name)]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_or_mutated_bytes_raise_only_decode_error(data: st.DataObject) -> None:
    name, gram = data.draw(st.sampled_from(RECORDED))
    raw = bytearray(gram)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 8))):
        if raw:
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        _decode_all(name, bytes(raw))


class _Script:
    """A socket that answers every request with prepared datagrams."""

    def __init__(self, answer: Callable[[int], list[bytes]]) -> None:
        self.answer = answer
        self.queue: list[bytes] = []
        self.sent = 0

    def send(self, data: bytes) -> int:
        self.sent += 1
        seq = NLMSGHDR.unpack_from(data)[3]
        self.queue += self.answer(seq)
        return len(data)

    def recv(self, size: int, *flags: int) -> bytes:
        return self.queue.pop(0)

    def close(self) -> None:
        pass


def _scripted(answer: Callable[[int], list[bytes]]) -> Iterator[rtnl.Netlink]:
    nl = rtnl.Netlink.__new__(rtnl.Netlink)
    nl._sock = _Script(answer)  # type: ignore[assignment]
    nl._seq = 0
    nl._ext_ack = False
    nl.interrupted = []
    yield nl


def test_a_dump_that_stays_interrupted_is_noted_not_silent() -> None:
    [chunk] = [c for c in messages("filters-egress") if filter_from(c) is not None]

    def answer(seq: int) -> list[bytes]:
        marked = NLMSGHDR.pack(len(chunk), RTM_NEWTFILTER, NLM_F_DUMP_INTR, seq, 0) + chunk[16:]
        return [marked + _message(NLMSG_DONE, NLM_F_DUMP_INTR, struct.pack("=i", 0), seq)]

    for nl in _scripted(answer):
        found = nl.filters(2, 0xFFFFFFF3)
        assert [f.pref for f in found] == [40]
        assert nl.interrupted == ["filters"]
        assert nl._sock.sent == 5  # type: ignore[attr-defined]


def test_a_dump_ending_in_an_error_raises_it() -> None:
    def answer(seq: int) -> list[bytes]:
        return [_message(NLMSG_DONE, 0, struct.pack("=i", -16), seq)]

    for nl in _scripted(answer):
        with pytest.raises(rtnl.NetlinkError, match="the dump ended early") as caught:
            nl.qdiscs()
        assert caught.value.errno == 16


@pytest.mark.usefixtures("privileged")
def test_a_refused_change_carries_the_kernels_own_text(box: Any) -> None:
    """Extended ACK: the kernel's reason beside the errno (here: create-only refused)."""
    from tcaudit.kernel.abi import CLSACT_PARENT

    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "veth0", pod, "eth0")
    box.clsact(host, "veth0")
    prog = box.load_returning(0, "x")
    box.attach(host, "veth0", "ingress", prog, pref=5, handle=1)
    with pytest.raises(rtnl.NetlinkError) as caught:
        box.attach(host, "veth0", "ingress", prog, pref=5, handle=1)
    assert caught.value.errno == 17 and "File exists: Filter already exists" in str(caught.value)
    with pytest.raises(rtnl.NetlinkError, match="Cannot find specified filter chain"):
        host.nl.delete_filter(
            host.ifindex("veth0"), CLSACT_PARENT["clsact/egress"], pref=7, handle=1,
            protocol=3, kind="bpf",
        )
