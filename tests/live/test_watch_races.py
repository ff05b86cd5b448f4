"""The watch's finding rules and its model's pure helpers, on hand-built data (no root)."""

from __future__ import annotations

from tcaudit.kernel.abi import PARENT_EGRESS, PARENT_INGRESS
from tcaudit.kernel.rtnl_codec import BpfOptions, Filter
from tcaudit.live.watch import races
from tcaudit.live.watch.events import (
    RESCANNED,
    Known,
    Space,
    bulk_deleted,
    everything,
    filter_event,
    key,
    rescan_events,
    take_filters,
    tcx_changes,
)
from tcaudit.model import Actor, Netns, Program, VendorMatch
from tcaudit.vendors.registry import load_registry

NETNS = Netns(4026531840, 4, ("host",), (), "host", "/run/netns/host")
LXC0, LXC1 = 7, 8
AGENT = Actor(42, "cilium-agent", 42, "netlink port id")
PROBE = Actor(99, "system-probe", 99, "netlink port id")
GONE = Actor(None, None, 1234, "netlink port id")
KERNEL = Actor(None, None, 0, "kernel")


def vendor(name: str) -> VendorMatch:
    return VendorMatch(name, None, "high", ("test",), load_registry()[0])


def prog(prog_id: int, name: str) -> Program:
    return Program(prog_id, name, f"{prog_id:016x}", "sched_cls", 2, (), (), None, None, 0)


def filt(
    pref: int, handle: int = 1, *, ifindex: int = LXC0, parent: int = PARENT_INGRESS
) -> Filter:
    options = BpfOptions(f"f{pref}", pref, None, True, 0, None, None)
    return Filter(ifindex, parent, None, 0, pref, 0x0300, handle, "bpf", False, options)


def known(
    pref: int,
    owner: str | None,
    *,
    handle: int = 1,
    ifindex: int = LXC0,
    parent: int = PARENT_INGRESS,
    added_by: Actor | None = None,
) -> Known:
    f = filt(pref, handle, ifindex=ifindex, parent=parent)
    return Known(f, prog(pref, f"p{pref}"), vendor(owner) if owner else None, added_by)


def space(*filters: Known) -> Space:
    """lxc0 and lxc1 with clsact, holding ``filters``."""
    model = Space(NETNS, links={LXC0: "lxc0", LXC1: "lxc1"}, clsact={LXC0, LXC1})
    for k in filters:
        model.filters.setdefault((k.filt.ifindex, k.filt.parent), {})[key(k.filt)] = k
    return model


# -- vendor-replaced -------------------------------------------------------------------


def test_a_vendor_replacing_another_vendors_filter_is_a_finding() -> None:
    race = races.vendor_replaced(space(), known(1, "Datadog CWS"), known(1, "Cilium"), AGENT)
    assert race == races.Race(
        "vendor-replaced",
        "lxc0 clsact/ingress pref 1 handle 0x1: Datadog CWS's filter replaced by Cilium "
        "program (by cilium-agent[42])",
        "lxc0",
        "clsact/ingress",
    )


def test_a_vendor_replacing_its_own_filter_is_not() -> None:
    assert races.vendor_replaced(space(), known(1, "Cilium"), known(1, "Cilium"), AGENT) is None
    assert races.vendor_replaced(space(), known(1, None), known(1, None), AGENT) is None


def test_replacements_from_or_to_an_unknown_owner_are_findings() -> None:
    to_unknown = races.vendor_replaced(space(), known(1, "Cilium"), known(1, None), GONE)
    assert to_unknown is not None
    assert "Cilium's filter replaced by an unknown program" in to_unknown.message
    assert to_unknown.message.endswith("(by netlink port 1234 (process gone))")
    from_unknown = races.vendor_replaced(
        space(), known(5, None, handle=0x2A), known(5, "Cilium", handle=0x2A), AGENT
    )
    assert from_unknown is not None
    assert from_unknown.message.startswith(
        "lxc0 clsact/ingress pref 5 handle 0x2a: an unknown owner's filter replaced by Cilium"
    )


def test_a_replacement_on_a_link_the_model_does_not_know_names_its_index() -> None:
    race = races.vendor_replaced(
        space(), known(1, "Cilium", ifindex=31), known(1, None, ifindex=31), AGENT
    )
    assert race is not None and race.interface == "31" and race.message.startswith("31 ")


# -- deleted-by-other ------------------------------------------------------------------


def test_a_filter_deleted_by_another_process_is_a_finding() -> None:
    gone = known(3, "Cilium", parent=PARENT_EGRESS, handle=0xCA, added_by=AGENT)
    assert races.deleted_by_other(space(), gone, PROBE) == races.Race(
        "deleted-by-other",
        "lxc0 clsact/egress pref 3 handle 0xca (Cilium) was deleted by system-probe[99], "
        "not by cilium-agent[42] who added it",
        "lxc0",
        "clsact/egress",
    )
    unowned = races.deleted_by_other(space(), known(3, None, added_by=AGENT), PROBE)
    assert unowned is not None and "(unknown owner) was deleted by" in unowned.message


def test_no_deleted_by_other_for_the_adder_or_unknown_processes() -> None:
    assert races.deleted_by_other(space(), known(3, "Cilium", added_by=AGENT), AGENT) is None
    # a different socket of the same process is the same actor
    same = Actor(42, "cilium-agent", 77, "netlink port id")
    assert races.deleted_by_other(space(), known(3, "Cilium", added_by=AGENT), same) is None
    # seen in the first dump (adder unknown), adder or deleter gone, the kernel itself
    assert races.deleted_by_other(space(), known(3, "Cilium"), PROBE) is None
    assert races.deleted_by_other(space(), known(3, "Cilium", added_by=GONE), PROBE) is None
    assert races.deleted_by_other(space(), known(3, "Cilium", added_by=AGENT), GONE) is None
    assert races.deleted_by_other(space(), known(3, "Cilium", added_by=AGENT), KERNEL) is None


# -- clsact deleted / recreated --------------------------------------------------------


def test_clsact_deleted_with_filters_names_their_owners() -> None:
    lost = [known(1, "Cilium"), known(2, None), known(3, "Istio"), known(4, "Cilium")]
    assert races.clsact_deleted(space(), LXC0, lost, PROBE) == races.Race(
        "clsact-deleted",
        "lxc0: clsact deleted by system-probe[99]: 4 filters lost (Cilium, Istio)",
        "lxc0",
        None,
    )
    unknown = races.clsact_deleted(space(), LXC1, [known(1, None, ifindex=LXC1)], KERNEL)
    assert unknown is not None
    assert unknown.message == "lxc1: clsact deleted by kernel: 1 filters lost (unknown owners)"


def test_an_empty_clsact_deleted_is_no_finding() -> None:
    assert races.clsact_deleted(space(), LXC0, [], PROBE) is None


def test_clsact_recreated_says_how_long_it_was_gone() -> None:
    assert races.clsact_recreated(space(), LXC0, 100.0, 100.25, AGENT) == races.Race(
        "clsact-recreated",
        "lxc0: clsact recreated 250 ms after it was deleted (by cilium-agent[42])",
        "lxc0",
        None,
    )


def test_a_first_clsact_is_not_recreated() -> None:
    assert races.clsact_recreated(space(), LXC0, None, 100.25, AGENT) is None


# -- hook-gap --------------------------------------------------------------------------


def test_a_vendor_losing_its_last_filter_on_a_hook_opens_a_gap() -> None:
    gone = known(1, "Cilium")
    model = space(known(2, "Istio"), known(1, "Cilium", parent=PARENT_EGRESS))
    # another vendor's filter, or the same vendor on the other direction, does not cover
    assert races.left_without(model, gone) == (NETNS.id, LXC0, PARENT_INGRESS, "Cilium")
    assert races.vendor_hook(model, gone) == (NETNS.id, LXC0, PARENT_INGRESS, "Cilium")


def test_no_gap_while_the_vendor_keeps_a_filter_on_the_hook_or_for_unknown_owners() -> None:
    assert races.left_without(space(known(9, "Cilium", handle=2)), known(1, "Cilium")) is None
    assert races.left_without(space(), known(1, None)) is None
    assert races.vendor_hook(space(), known(1, None)) is None


def test_a_gap_longer_than_the_limit_is_a_finding() -> None:
    gap = (NETNS.id, LXC0, PARENT_INGRESS, "Cilium")
    assert races.hook_gap(space(), gap, 0.25, 0.1) == races.Race(
        "hook-gap",
        "lxc0 clsact/ingress was left without Cilium's filter for 250 ms",
        "lxc0",
        "clsact/ingress",
    )


def test_a_gap_no_longer_than_the_limit_is_none() -> None:
    gap = (NETNS.id, LXC0, PARENT_INGRESS, "Cilium")
    assert races.hook_gap(space(), gap, 0.05, 0.1) is None
    assert races.hook_gap(space(), gap, 0.1, 0.1) is None
    assert races.hook_gap(space(), gap, 0.05, 0.1, still=True) is None


def test_a_gap_still_open_at_the_end() -> None:
    gap = (NETNS.id, LXC1, PARENT_EGRESS, "Istio")
    assert races.hook_gap(space(), gap, 1.5, 0.1, still=True) == races.Race(
        "hook-gap",
        "lxc1 clsact/egress is still without Istio's filter (1500 ms)",
        "lxc1",
        "clsact/egress",
    )


def test_a_gap_on_a_link_the_model_does_not_know() -> None:
    gap = (NETNS.id, 31, PARENT_INGRESS, "Cilium")
    closed = races.hook_gap(space(), gap, 0.25, 0.1)
    assert closed is not None and closed.interface is None
    assert closed.message.startswith("? clsact/ingress was left without")
    still = races.hook_gap(space(), gap, 0.25, 0.1, still=True)
    assert still is not None and still.interface == "31"


# -- piling ----------------------------------------------------------------------------


def test_one_vendor_at_two_prefs_of_a_hook_is_piling() -> None:
    new = known(2, "Istio")
    model = space(known(1, "Istio"), new, known(3, "Cilium"), known(7, "Istio", ifindex=LXC1))
    assert races.piling(model, new, set()) == races.Race(
        "piling",
        "lxc0 clsact/ingress: Istio's programs pile up at prefs 1, 2 (old ones left behind, "
        "as in cilium/cilium#36172)",
        "lxc0",
        "clsact/ingress",
    )


def test_no_piling_at_one_pref_across_hooks_for_unknown_owners_or_twice() -> None:
    new = known(1, "Istio", handle=2)
    assert races.piling(space(known(1, "Istio"), new), new, set()) is None  # one pref
    egress = known(2, "Istio", parent=PARENT_EGRESS)
    assert races.piling(space(known(1, "Istio"), egress), egress, set()) is None
    other = known(2, "Cilium")
    assert races.piling(space(known(1, "Istio"), other), other, set()) is None
    unknown = known(2, None)
    assert races.piling(space(known(1, None), unknown), unknown, set()) is None
    piled = known(2, "Istio")
    model = space(known(1, "Istio"), piled)
    assert races.piling(model, piled, {(NETNS.id, LXC0, PARENT_INGRESS, "Istio")}) is None
    assert races.piling(model, piled, {(NETNS.id, LXC1, PARENT_INGRESS, "Istio")}) is not None


# -- tcx-in-front ----------------------------------------------------------------------


def test_a_tcx_program_in_front_of_clsact_filters() -> None:
    model = space(known(1, "Cilium"), known(2, None))
    race = races.tcx_in_front(model, LXC0, "tcx/ingress", 77, prog(77, "tcx_front"))
    assert race == races.Race(
        "tcx-in-front",
        "lxc0 tcx/ingress: TCX program 77 (tcx_front) now runs before 2 clsact filters",
        "lxc0",
        "tcx/ingress",
    )
    egress = races.tcx_in_front(
        space(known(1, None, parent=PARENT_EGRESS)), LXC0, "tcx/egress", 77, prog(77, "x")
    )
    assert egress is not None and "before 1 clsact filters" in egress.message


def test_no_tcx_in_front_without_filters_in_that_direction() -> None:
    model = space(known(1, "Cilium", parent=PARENT_EGRESS), known(1, None, ifindex=LXC1))
    assert races.tcx_in_front(model, LXC0, "tcx/ingress", 77, prog(77, "x")) is None
    model.filters[(LXC0, PARENT_INGRESS)] = {}  # clsact emptied
    assert races.tcx_in_front(model, LXC0, "tcx/ingress", 77, prog(77, "x")) is None


def test_a_race_becomes_a_finding_stamped_with_time_and_namespace() -> None:
    finding = races.Race("piling", "msg", "lxc0", "clsact/ingress").finding(12.5, "host")
    assert (finding.time, finding.kind, finding.message, finding.netns) == (
        12.5,
        "piling",
        "msg",
        "host",
    )
    assert (finding.interface, finding.hook) == ("lxc0", "clsact/ingress")


# -- the model's helpers (events.py) ---------------------------------------------------


def test_bulk_deletes_take_a_pref_or_the_whole_hook() -> None:
    bucket = {key(k.filt): k for k in (known(5, None), known(5, None, handle=2), known(6, None))}
    assert bulk_deleted(bucket, 5, 0) == [(5, 1, 0x0300, "bpf"), (5, 2, 0x0300, "bpf")]
    assert len(bulk_deleted(bucket, 0, 0)) == 3
    assert bulk_deleted(bucket, 0, 0x0008) == []  # another protocol
    assert bulk_deleted(bucket, 7, 0) == []


def test_take_filters_empties_both_directions_of_one_link() -> None:
    model = space(known(1, "A"), known(2, "B", parent=PARENT_EGRESS), known(3, "C", ifindex=LXC1))
    assert sorted(k.filt.pref for k in take_filters(model, LXC0)) == [1, 2]
    assert list(model.filters) == [(LXC1, PARENT_INGRESS)]


def test_filter_events_name_the_link_hook_and_classic_bpf() -> None:
    classic = Filter(
        LXC0,
        PARENT_EGRESS,
        None,
        0,
        1,
        0x0300,
        1,
        "bpf",
        False,
        BpfOptions(None, None, None, False, 0, None, ((6, 0, 0, 0xFFFF),)),
    )
    event = filter_event(space(), "filter-added", classic, None, AGENT, now=3.0)
    assert (event.time, event.netns, event.netns_id) == (3.0, "host", NETNS.id)
    assert (event.interface, event.hook, event.kind, event.actor) == (
        "lxc0",
        "clsact/egress",
        "cbpf",
        AGENT,
    )
    old, new = known(1, "A"), known(1, "B")
    replaced = filter_event(space(), "filter-replaced", new.filt, new, None, old, now=0)
    assert replaced.kind == "bpf" and replaced.filter_name == "f1"
    assert (replaced.vendor, replaced.previous_vendor) == (new.vendor, old.vendor)


def test_a_rescan_reports_what_changed_without_actors() -> None:
    kept, moved, gone, new = known(1, "A"), known(2, "A"), known(3, "A"), known(4, "B")
    swapped = Known(moved.filt, prog(99, "other"), moved.vendor, None)
    before, after = everything(space(kept, moved, gone)), everything(space(kept, swapped, new))
    found = rescan_events(space(), before, after, 5.0)
    assert [(e.what, e.pref, e.actor, e.note) for e in found] == [
        ("filter-replaced", 2, None, RESCANNED),
        ("filter-added", 4, None, RESCANNED),
        ("filter-deleted", 3, None, RESCANNED),
    ]
    assert found[0].previous_program == moved.program


def test_tcx_changes_follow_revisions() -> None:
    old = {(LXC0, "tcx/ingress"): (3, (10, 11)), (LXC0, "tcx/egress"): (1, (20,))}
    fresh = {
        (LXC0, "tcx/ingress"): (5, (11, 12)),  # 10 out, 12 in
        (LXC0, "tcx/egress"): (1, (20,)),  # same revision: nothing to say
        (LXC1, "tcx/ingress"): (1, (30,)),  # a link first seen: all of it attached
    }
    assert tcx_changes(old, fresh) == [
        ((LXC0, "tcx/ingress"), [12], [10]),
        ((LXC1, "tcx/ingress"), [30], []),
    ]
