"""Each blind spot names its one cause, and the headline counts the hooks of each culprit
(advice/causes.py) instead of listing every possible cause at once."""

from __future__ import annotations

from tcaudit.advice.causes import CAUSES, Cause, phrase, tally
from tcaudit.advice.recommend import recommend
from tcaudit.model import Entry, Hook, Host, Interface, NamespaceScan, Netns, Scan, Verdict
from tcaudit.vendors.attribution import add_vendors
from tests.advice.test_recommend_rules import ACCEPT, CONTINUE, bpf, cws, prog

UNKNOWN_VERDICT = Verdict(None, None, "unknown", "helper 999")


def tcx(verdict: Verdict = ACCEPT) -> Entry:
    return Entry(pref=None, handle=None, chain=None, protocol=None, kind="tcx",
                 direct_action=None, filter_name=None, program=prog(5, "tcx_prog"),
                 verdict=verdict)


def node(*interfaces: tuple[tuple[Entry, ...], tuple[Entry, ...]]) -> Scan:
    """One namespace; each interface: (its TCX ingress programs, its clsact ingress)."""
    built = []
    for i, (tcx_entries, clsact_entries) in enumerate(interfaces):
        hooks = [Hook("clsact/ingress", True, clsact_entries, qdisc="clsact")]
        if tcx_entries:
            hooks.insert(0, Hook("tcx/ingress", True, tcx_entries))
        built.append(Interface(f"veth{i}", i + 2, "veth", tuple(hooks)))
    netns = Netns(1, 1, ("n",), (), "n", "/n")
    return add_vendors(Scan(Host("n", "6.18", True), (NamespaceScan(netns, tuple(built)),)))


def test_the_headline_names_each_culprits_cause_with_its_count_of_hooks() -> None:
    pref1 = ((), (bpf(1, "acceptor", ACCEPT), cws()))
    tcx_pass = ((tcx(),), (cws(),))
    result = recommend(node(pref1, pref1, pref1, tcx_pass, tcx_pass, ((), (cws(),))))
    assert result.action == "disable-network"
    assert [(c.kind, c.hooks, c.pref, c.verbs) for c in result.causes] == [
        ("pref-1", 3, 1, ("accept",)),
        ("tcx", 2, None, ("pass",)),
    ]
    assert result.summary == (
        "Disable CWS network detections: 5 of 6 hooks stay blind at every priority "
        "(unknown vendor: a chain-ender at pref 1 on 3 hooks; unknown vendor: a TCX program "
        "that can pass on 2 hooks). The alternatives keep network detections with known "
        "blind spots."
    )
    # only the causes that apply: nothing about prefs no priority fits under
    assert "no free priority" not in result.summary
    assert [b.cause for b in result.blind] == ["pref-1"] * 3 + ["tcx"] * 2
    blind = [f.message for f in result.findings if f.kind == "blind"]
    assert blind[0] == (
        "veth0 clsact/ingress in n: acceptor can accept (ends the chain); "
        "at pref 1: nothing can be put ahead of it"
    )
    assert blind[-1].endswith("it runs before every clsact filter; no priority helps")


def test_a_pref_no_free_priority_fits_under_is_its_own_cause() -> None:
    # an accept at pref 2 needs CWS at 1, but another hook holds pref 1 for IPv4 only
    result = recommend(node(
        ((), (bpf(2, "acceptor", ACCEPT), cws())),
        ((), (bpf(1, "ipv4_only", CONTINUE, protocol="ip"), cws())),
    ))
    assert [(c.kind, c.pref, c.hooks, c.fixable) for c in result.causes] == [
        ("no-free-priority", 2, 1, False)
    ]
    assert "(unknown vendor: a chain-ender at pref 2 that no free priority fits under on " \
        "1 hook)" in result.summary
    [finding] = [f for f in result.findings if f.kind == "blind"]
    assert "at pref 2: no free priority fits under it" in finding.message


def test_fixable_causes_say_so_and_set_priority_counts_them() -> None:
    lower = ((), (bpf(5, "acceptor", ACCEPT), cws()))
    same = ((), (bpf(10, "late", ACCEPT, handle=7), cws()))  # added after CWS: runs first
    result = recommend(node(lower, lower, same))
    assert (result.action, result.classifier_priority) == ("set-priority", 4)
    assert [(c.kind, c.pref, c.hooks) for c in result.causes] == [
        ("lower-pref", 5, 2), ("same-pref", 10, 1)
    ]
    assert result.summary == (
        "Set classifier_priority to 4: at 10, CWS is blind on 3 of 3 hooks (unknown vendor: a "
        "chain-ender at pref 5 on 2 hooks; unknown vendor: a chain-ender at CWS's own pref 10 "
        "that runs first on 1 hook); at 4 it runs ahead of every chain-ending classifier."
    )
    messages = [f.message for f in result.findings if f.kind == "blind"]
    assert messages[0].endswith("at pref 5: a lower priority puts CWS ahead")
    assert messages[2].endswith("at CWS's own pref 10: a lower priority puts CWS ahead")


def test_stuck_and_fixable_culprits_are_told_apart() -> None:
    result = recommend(node(
        ((), (bpf(1, "acceptor", ACCEPT), cws())),
        ((), (bpf(5, "acceptor", ACCEPT), cws())),
    ))
    assert result.action == "disable-network"
    assert "1 of 2 hooks stay blind at every priority (unknown vendor: a chain-ender at " \
        "pref 1 on 1 hook). A lower priority would fix 1 more (unknown vendor: a " \
        "chain-ender at pref 5 on 1 hook)." in result.summary


def test_an_unknown_verdict_may_hide_and_says_how_to_find_out() -> None:
    result = recommend(node(((), (bpf(3, "mystery", UNKNOWN_VERDICT), cws()))))
    [cause] = result.causes
    assert (cause.kind, cause.certain, cause.level) == ("unknown-verdict", False, "warning")
    assert "a classifier at pref 3 whose verdict tcaudit cannot tell (it may hide)" in (
        result.summary
    )
    [finding] = [f for f in result.findings if f.kind == "unknown-verdict"]
    assert finding.level == "warning" and "tcaudit explain shows why" in finding.message


def test_tally_counts_distinct_hooks_and_orders_the_biggest_first() -> None:
    result = recommend(node(
        ((tcx(),), (bpf(1, "acceptor", ACCEPT), cws())),  # two culprits on one hook
        ((tcx(),), (cws(),)),
    ))
    causes = tally(result.blind)
    assert [(c.kind, c.hooks) for c in causes] == [("tcx", 2), ("pref-1", 1)]
    assert causes == result.causes
    assert all(c.kind in CAUSES for c in causes)
    assert phrase(Cause("pref-1", "Cilium", 1, ("accept",), 248, True, False)) == (
        "Cilium: a chain-ender at pref 1 on 248 hooks"
    )
