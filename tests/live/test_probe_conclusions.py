"""The probe's counts turned into conclusions, on hand-built plans and counts (no root)."""

from __future__ import annotations

from tcaudit.live.probe.conclusions import conclude, results
from tcaudit.model import (
    Conclusion,
    Counts,
    Entry,
    Netns,
    ObserverResult,
    Placement,
    Plan,
    Program,
    Verdict,
)

NS = Netns(id=1, dev=1, names=("a",), pids=(), label="a", path="/a")
OTHER_NS = Netns(id=2, dev=1, names=("b",), pids=(), label="b", path="/b")
INGRESS = "clsact/ingress"
EGRESS = "clsact/egress"


NO_AFTER = (
    "cni at pref 3: no observer could go right after it (pref 4 is taken; --share-pref joins it)"
)


def entry(
    pref: int = 3,
    effective: tuple[str, ...] | None = ("continue", "drop"),
    name: str | None = "cni",
    program: Program | None = None,
) -> Entry:
    verdict = None if effective is None else Verdict(None, effective, "static", None)
    return Entry(
        pref=pref,
        handle=1,
        chain=0,
        protocol="all",
        kind="bpf",
        direct_action=True,
        filter_name=name,
        program=program,
        verdict=verdict,
    )


def place(
    pref: int, *roles: str, hook: str = INGRESS, interface: str = "lxc0", netns: Netns = NS
) -> Placement:
    return Placement(netns, interface, 2, hook, pref, roles, False)


def seen(placement: Placement, packets: int, reference: int | None = 100) -> ObserverResult:
    return ObserverResult(placement, 1, 1, Counts(packets=packets), reference, "ref", None)


def judge(subject: Entry, observers: list[ObserverResult], *others: Entry) -> Conclusion:
    subjects = tuple((NS, "lxc0", INGRESS, e) for e in (subject, *others))
    plan = Plan(tuple(o.placement for o in observers), (), subjects, 10)
    return conclude(plan, subjects[0], observers)


# -- conclude ---------------------------------------------------------------------------


def test_a_classifier_that_drops_some_packets_ends_the_chain_and_agrees() -> None:
    cni = entry()
    c = judge(cni, [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 40)])
    assert c == Conclusion(
        "a", "lxc0", INGRESS, cni, 100, 40, 0.6, True,
        "cni at pref 3 ends the chain for 60% of packets (60 of 100)",
    )


def test_a_classifier_that_hands_everything_on_agrees_and_names_what_it_could_do() -> None:
    c = judge(entry(), [seen(place(2, "before 3"), 200), seen(place(4, "after 3"), 200)])
    assert (c.before, c.after, c.ends_chain_ratio, c.agrees) == (200, 200, 0.0, True)
    assert c.message == (
        "cni at pref 3 hands packets on (200/200 got past it); statically it can "
        "continue|drop, which the traffic seen never hit"
    )


def test_hands_on_when_its_bytecode_only_continues_says_nothing_more() -> None:
    c = judge(
        entry(effective=("continue",)),
        [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 97)],
    )
    assert c.agrees is True
    assert c.ends_chain_ratio is not None and round(c.ends_chain_ratio, 6) == 0.03
    assert c.message == "cni at pref 3 hands packets on (97/100 got past it)"


def test_ending_the_chain_when_the_bytecode_only_continues_is_a_disagreement() -> None:
    c = judge(
        entry(effective=("continue",)),
        [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 94)],
    )
    assert c.agrees is False
    assert c.message == (
        "DISAGREEMENT: cni at pref 3 ends the chain for 6% of packets (6 of 100), "
        "but its bytecode only hands packets on (continue)"
    )


def test_an_unknown_verdict_can_end_the_chain_so_never_disagrees() -> None:
    ends = judge(
        entry(effective=None), [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 0)]
    )
    assert (ends.ends_chain_ratio, ends.agrees) == (1.0, True)
    assert ends.message == "cni at pref 3 ends the chain for 100% of packets (100 of 100)"
    passes = judge(
        entry(effective=None), [seen(place(2, "before 3"), 10), seen(place(4, "after 3"), 10)]
    )
    assert passes.agrees is True
    assert passes.message.endswith("; statically it can unknown, which the traffic seen never hit")


def test_more_after_than_before_counts_as_handing_on() -> None:
    c = judge(entry(), [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 120)])
    assert (c.ends_chain_ratio, c.agrees) == (0.0, True)
    assert c.message.startswith("cni at pref 3 hands packets on (120/100 got past it)")


def test_without_a_before_observer_the_after_observers_reference_is_what_reached_it() -> None:
    c = judge(entry(), [seen(place(4, "after 3"), 25, reference=50)])
    assert (c.before, c.after, c.ends_chain_ratio, c.agrees) == (50, 25, 0.5, True)


def test_no_traffic_means_no_verdict() -> None:
    cni = entry()
    c = judge(cni, [seen(place(2, "before 3"), 0), seen(place(4, "after 3"), 0)])
    assert c == Conclusion(
        "a", "lxc0", INGRESS, cni, 0, 0, None, None,
        "cni at pref 3: no traffic reached it "
        "(try --generate on lab hooks, or a longer --duration)",
    )
    # no reference either: still no verdict, never a division by zero
    assert judge(cni, [seen(place(4, "after 3"), 5, reference=None)]).agrees is None


def test_no_observer_after_it_means_no_verdict() -> None:
    cni = entry()
    c = judge(cni, [seen(place(2, "before 3"), 100)])
    assert c == Conclusion(
        "a", "lxc0", INGRESS, cni, None, None, None, None,
        NO_AFTER,
    )


def test_observers_on_another_hook_interface_or_namespace_are_not_used() -> None:
    elsewhere = [
        seen(place(4, "after 3", hook=EGRESS), 40),
        seen(place(4, "after 3", interface="lxc1"), 40),
        seen(place(4, "after 3", netns=OTHER_NS), 40),
    ]
    c = judge(entry(), [seen(place(2, "before 3"), 100), *elsewhere])
    assert c.message == NO_AFTER
    assert c.agrees is None


def test_roles_of_another_pref_are_not_used() -> None:
    c = judge(entry(), [seen(place(2, "before 30"), 100), seen(place(31, "after 30"), 40)])
    assert c.message == NO_AFTER


def test_filters_sharing_a_pref_are_seen_together_and_not_judged() -> None:
    cni, other = entry(), entry(name="other")
    c = judge(cni, [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 40)], other)
    assert c == Conclusion(
        "a", "lxc0", INGRESS, cni, None, None, None, None,
        "cni at pref 3 shares its pref with 1 other filter(s): the observers see them "
        "together (their combined effect is on the other lines)",
    )
    # a subject at another pref is no neighbour
    observers = [seen(place(2, "before 3"), 100), seen(place(4, "after 3"), 40)]
    alone = judge(cni, observers, entry(pref=7))
    assert alone.agrees is True


def test_a_nameless_filter_goes_by_its_program_then_its_kind() -> None:
    program = Program(1, "handle_ingress", None, None, None, (), (), None, None, None)
    observers = [seen(place(4, "after 3"), 0, reference=0)]
    assert judge(entry(name=None, program=program), observers).message.startswith(
        "handle_ingress at pref 3:"
    )
    assert judge(entry(name=None), observers).message.startswith("bpf at pref 3:")


# -- results ----------------------------------------------------------------------------


def test_each_observer_is_set_against_the_one_ahead_of_it_and_the_first_against_rx() -> None:
    cni = entry()
    before, after, cws = place(2, "before 3"), place(4, "after 3"), place(10, "cws")
    plan = Plan((before, after, cws), (), ((NS, "lxc0", INGRESS, cni),), 10)
    attached = [(cws, 3, 0x7CA3), (after, 2, 0x7CA2), (before, 1, 0x7CA1)]  # any order
    counts = {1: Counts(packets=100), 2: Counts(packets=40), 3: Counts(packets=30)}
    result = results(plan, attached, counts, {(1, 2): (1000, 7)}, {(1, 2): (1100, 9)}, 2.5)
    assert result.plan is plan
    assert result.duration == 2.5
    assert result.observers == (
        ObserverResult(before, 1, 0x7CA1, Counts(packets=100), 100, "rx packets of lxc0", 1.0),
        ObserverResult(after, 2, 0x7CA2, Counts(packets=40), 100, "observer at pref 2", 0.4),
        ObserverResult(cws, 3, 0x7CA3, Counts(packets=30), 40, "observer at pref 4", 0.75),
    )
    assert result.conclusions == (
        Conclusion(
            "a", "lxc0", INGRESS, cni, 100, 40, 0.6, True,
            "cni at pref 3 ends the chain for 60% of packets (60 of 100)",
        ),
    )
    assert result.notes == ()


def test_egress_is_set_against_tx_with_a_note_given_once() -> None:
    # two namespaces, each with an eth0 egress hook: the same note, given once
    first = place(5, "cws", hook=EGRESS, interface="eth0")
    second = place(5, "cws", hook=EGRESS, interface="eth0", netns=OTHER_NS)
    plan = Plan((first, second), (), (), 5)
    counts = {1: Counts(packets=8), 2: Counts(packets=3)}
    start = {(1, 2): (0, 10), (2, 2): (0, 0)}
    end = {(1, 2): (50, 18), (2, 2): (0, 0)}
    result = results(plan, [(first, 1, 1), (second, 2, 2)], counts, start, end, 1.0)
    assert [(o.reference_packets, o.reference, o.pass_ratio) for o in result.observers] == [
        (8, "tx packets of eth0", 1.0),
        (0, "tx packets of eth0", None),  # no reference: no ratio, never a division by zero
    ]
    assert result.notes == (
        "eth0 egress: tx is counted after the egress hook, so drops or redirects there "
        "make the reference low",
    )
    assert result.conclusions == ()


def test_hooks_are_compared_apart_and_unknown_links_count_zero() -> None:
    ingress, egress = place(2, "at"), place(2, "at", hook=EGRESS)
    plan = Plan((ingress, egress), (), (), 10)
    counts = {1: Counts(packets=5), 2: Counts(packets=6)}
    result = results(plan, [(ingress, 1, 1), (egress, 2, 2)], counts, {}, {}, 1.0)
    # each is first on its own hook, so neither is set against the other
    assert [(o.reference_packets, o.reference, o.pass_ratio) for o in result.observers] == [
        (0, "rx packets of lxc0", None),
        (0, "tx packets of lxc0", None),
    ]
    assert len(result.notes) == 1


def test_nothing_attached_gives_no_observers_and_unjudged_subjects() -> None:
    cni = entry()
    plan = Plan((), (), ((NS, "lxc0", INGRESS, cni),), 10)
    result = results(plan, [], {}, {}, {}, 0.0)
    assert result.observers == ()
    assert [c.message for c in result.conclusions] == [
        NO_AFTER
    ]
