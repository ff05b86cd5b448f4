"""Edge cases of the decision rule on hand-built scans (no kernel needed)."""

from __future__ import annotations

from dataclasses import replace

from tcaudit.advice.merge import merge
from tcaudit.advice.recommend import recommend
from tcaudit.model import (
    Entry,
    Holder,
    Hook,
    Host,
    Interface,
    NamespaceScan,
    Netns,
    Program,
    Scan,
    Verdict,
)
from tcaudit.vendors.attribution import add_vendors

ACCEPT = Verdict((0,), ("accept",), "static", None)
CONTINUE = Verdict((-1,), ("continue",), "static", None)
DROP = Verdict((2,), ("drop",), "static", None)


def prog(pid: int, name: str) -> Program:
    return Program(pid, name, f"{pid:016x}", "sched_cls", 2, (), (), None, None, 0)


def bpf(
    pref: int, name: str, verdict: Verdict, *, handle: int = 1, protocol: str = "all", pid: int = 1
) -> Entry:
    return Entry(
        pref=pref,
        handle=handle,
        chain=0,
        protocol=protocol,
        kind="bpf",
        direct_action=True,
        filter_name=name,
        program=prog(pid, name[:15]),
        verdict=verdict,
    )


def cws(pref: int = 10) -> Entry:
    return Entry(
        pref=pref,
        handle=0xCA,
        chain=0,
        protocol="all",
        kind="bpf",
        direct_action=True,
        filter_name="classifier_ingress_security1_1_2115",
        program=prog(99, "classifier_ingr"),
        verdict=CONTINUE,
    )


def scan(
    *hooks: tuple[str, tuple[Entry, ...]], tcx: tuple[Entry, ...] = (), hostname: str = "n"
) -> Scan:
    interfaces = []
    for i, (hook, entries) in enumerate(hooks):
        hook_list = [Hook(hook, True, entries, qdisc="clsact")]
        if tcx and i == 0:
            hook_list.insert(0, Hook("tcx/ingress", True, tcx))
        interfaces.append(Interface(f"veth{i}", i + 2, "veth", tuple(hook_list)))
    netns = Netns(1, 1, ("n",), (), "n", "/n")
    return add_vendors(
        Scan(Host(hostname, "6.18", True), (NamespaceScan(netns, tuple(interfaces)),))
    )


def test_fixable_is_judged_against_every_hooks_collisions() -> None:
    # an accept at pref 2 needs CWS at 1, but another hook holds pref 1 for IPv4 only
    result = recommend(
        scan(
            ("clsact/ingress", (bpf(2, "acceptor", ACCEPT), cws())),
            ("clsact/ingress", (bpf(1, "ipv4_only", CONTINUE, protocol="ip"), cws())),
        )
    )
    assert result.action == "disable-network"
    assert [b.fixable for b in result.blind] == [False]
    assert "1 of 2 hooks stay blind" in result.summary


def test_same_pref_filters_after_cws_in_run_order_do_not_blind_it() -> None:
    newer_vendor, older_vendor = bpf(10, "late", ACCEPT, handle=7), bpf(10, "early", ACCEPT)
    ahead = recommend(scan(("clsact/ingress", (newer_vendor, cws()))))
    assert ahead.action == "set-priority" and ahead.classifier_priority == 9
    assert [b.certain for b in ahead.blind] == [True]
    behind = recommend(scan(("clsact/ingress", (cws(), older_vendor))))
    assert behind.action == "keep" and not behind.blind
    # CWS not attached yet: whoever is added last runs first, so it MAY be hidden
    absent = recommend(scan(("clsact/ingress", (older_vendor,))), priority=10)
    assert [b.certain for b in absent.blind] == [False]
    assert absent.classifier_priority == 9


def test_a_drop_only_tcx_program_is_a_warning_like_a_drop_only_filter() -> None:
    """Issue 15: what a vendor returns after granting access is what matters; a TCX
    firewall that can only drop hides nothing that is delivered (PASS still blinds)."""
    tcx_drop = Entry(
        pref=None,
        handle=None,
        chain=None,
        protocol=None,
        kind="tcx",
        direct_action=None,
        filter_name=None,
        program=prog(5, "dropper"),
        verdict=DROP,
    )
    result = recommend(scan(("clsact/ingress", (cws(),)), tcx=(tcx_drop,)))
    assert result.action == "keep" and result.blind == ()
    [warning] = [f for f in result.findings if f.kind == "drop-only"]
    assert warning.level == "warning" and "can drop packets" in warning.message
    tcx_pass = replace(tcx_drop, verdict=Verdict((0,), ("accept",), "static", None))
    passing = recommend(scan(("clsact/ingress", (cws(),)), tcx=(tcx_pass,)))
    assert passing.action == "disable-network"
    assert passing.blind[0].culprit_hook == "tcx/ingress"
    # a drop-only clsact filter is only a warning
    clsact_drop = recommend(scan(("clsact/ingress", (bpf(3, "dropper", DROP), cws()))))
    assert clsact_drop.action == "keep"
    assert [f.kind for f in clsact_drop.findings] == ["drop-only"]


def test_classic_bpf_shares_the_bpf_kind() -> None:
    cbpf = Entry(
        pref=4,
        handle=1,
        chain=0,
        protocol="all",
        kind="cbpf",
        direct_action=False,
        filter_name="bytecode",
        program=None,
        verdict=CONTINUE,
    )
    result = recommend(scan(("clsact/ingress", (cbpf, bpf(5, "acceptor", ACCEPT), cws()))))
    assert (result.action, result.classifier_priority) == ("set-priority", 4)


def test_merge_skips_a_priority_that_collides_on_another_node() -> None:
    a = scan(("clsact/ingress", (bpf(5, "acceptor", ACCEPT), cws())), hostname="a")
    b = scan(
        ("clsact/ingress", (bpf(4, "ipv4_only", CONTINUE, protocol="ip"), cws())), hostname="b"
    )
    answer = merge([("a", "a.json", a), ("b", "b.json", b)])
    assert (answer.action, answer.classifier_priority) == ("set-priority", 3)


def cws_named(pref: int, verdict: Verdict, name: str, pid: int = 99) -> Entry:
    """An entry attribution gives to CWS by its names, whatever it returns."""
    return Entry(
        pref=pref,
        handle=1,
        chain=0,
        protocol="all",
        kind="bpf",
        direct_action=True,
        filter_name=name,
        program=prog(pid, name[:15]),
        verdict=verdict,
    )


def test_a_cws_look_alike_that_accepts_counts_like_any_vendor() -> None:
    """Named like CWS (attribution is by name) but returning OK at pref 1: not CWS's,
    so it blinds the hook, does not set the priority in effect, and is named."""
    impostor = cws_named(1, ACCEPT, "classifier_ingress_security9_9_4242", pid=7)
    result = recommend(scan(("clsact/ingress", (impostor, cws()))))
    assert result.action == "disable-network"
    assert result.current_priority == 10 and result.priority_source == "detected"
    assert [(b.pref, b.vendor) for b in result.blind] == [(1, None)]
    [found] = [f for f in result.findings if f.kind == "cws-impostor"]
    assert found.level == "warning" and found.pref == 1
    assert "classifier_ingress_security9_9_4242 at pref 1 is named like Datadog CWS" in (
        found.message
    )
    assert "can accept" in found.message


def test_cws_that_drops_by_policy_or_hands_on_is_trusted() -> None:
    """CWS's classifiers return UNSPEC, or SHOT under a network_filter drop rule."""
    for verdict in (CONTINUE, DROP, Verdict((-1, 2), ("continue", "drop"), "static", None)):
        entry = cws_named(3, verdict, "classifier_ingress_security1_1_2115")
        result = recommend(scan(("clsact/ingress", (entry,))))
        assert (result.action, result.current_priority) == ("keep", 3), verdict
        assert not [f for f in result.findings if f.kind == "cws-impostor"]


def test_a_cws_look_alike_of_unknown_verdict_may_hide() -> None:
    unknown = Verdict(None, None, "unknown", "helper 999")
    entry = cws_named(1, unknown, "classifier_egress_security1_1_2115", pid=8)
    result = recommend(scan(("clsact/ingress", (entry, cws()))))
    assert [f.kind for f in result.findings if f.pref == 1] == ["cws-impostor", "unknown-verdict"]
    assert "has a verdict tcaudit cannot tell" in result.findings[0].message


def held(entry: Entry, comm: str, exe: str | None) -> Entry:
    assert entry.program is not None
    return replace(entry, program=replace(entry.program, holders=(Holder(4242, comm, exe),)))


def test_cws_raw_packet_classifiers_held_by_system_probe_are_its_own() -> None:
    """With raw-packet rules loaded, CWS's raw-packet classifier can accept (its
    generated filters return TC_ACT_OK on no match). Held by a running system-probe it
    is CWS's own: not an impostor, not a blind spot, the priority stays; a warning says
    what runs after it does not see what it accepts. Held by a process that only calls
    itself system-probe, it is an impostor as before."""
    raw = cws_named(10, Verdict((-1, 0), ("accept", "continue"), "static", None),
                    "classifier_raw_packet_ingress_security1_1_2115")
    result = recommend(scan(("clsact/ingress", (held(raw, "system-probe", "system-probe"),
                                                cws()))))
    assert (result.action, result.current_priority) == ("keep", 10)
    assert not result.blind
    kinds = [f.kind for f in result.findings]
    assert "cws-impostor" not in kinds
    [ends] = [f for f in result.findings if f.kind == "cws-ends-chain"]
    assert ends.level == "warning" and ends.pref == 10 and ends.vendor == "Datadog CWS"
    assert "held by system-probe" in ends.message and "can accept|continue" in ends.message
    assert "CWS's own main classifier among them" in ends.message  # it runs first
    for comm, exe in (("system-probe", "python3"), ("python3", "system-probe"),
                      ("system-probe", None)):
        result = recommend(scan(("clsact/ingress", (held(raw, comm, exe), cws()))))
        assert "cws-impostor" in [f.kind for f in result.findings], (comm, exe)
        assert "cws-ends-chain" not in [f.kind for f in result.findings]
        assert result.action != "keep"
