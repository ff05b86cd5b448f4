"""The recommendation: what `classifier_priority` CWS should use, or that it must give up
its network detections — a pure function of a scan with verdicts and vendors.

The rule is the seed document's checklist ("Compatibility with custom Kubernetes network
plugins", Datadog CWS troubleshooting), extended where the kernel demands it
(contracts.md, "The recommendation's action"):

- CWS attaches at one pref on every interface of every namespace, ingress and egress.
- A classifier that runs before CWS and can end the chain with accept, redirect, steal or
  trap hides traffic from it; drop-only hides nothing that is delivered (reported as a
  warning); an unknown verdict "may hide" (counted as hiding for the action, reported as
  a warning finding).
- TCX programs run before every clsact filter: one that can PASS or REDIRECT blinds the
  hook at every priority. So does a chain-ender at pref 1: nothing stable goes ahead of
  it (pref 0 means "kernel picks", and a filter added later at the same pref runs first).
- Otherwise the answer is the highest priority strictly below the lowest chain-ending
  pref on any hook, skipping prefs some hook holds with another kind or protocol (CWS
  could not attach there).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from tcaudit.advice.agent_config import agent_notes, in_effect, where_set
from tcaudit.advice.causes import Cause, cause_kind, consequence, sentence, tally
from tcaudit.advice.snippets import located, snippets
from tcaudit.model import (
    CwsAgent,
    Entry,
    Hook,
    Interface,
    NamespaceScan,
    Netns,
    Scan,
    VendorMatch,
    map_entries,
)
from tcaudit.vendors.cws import (
    CWS_VENDOR,
    DEFAULT_PRIORITY,
    detect_priority,
    impostor,
    trusted,
)

HIDING = frozenset({"accept", "redirect", "stolen", "trap"})
DIRECTIONS = ("ingress", "egress")


@dataclass(frozen=True)
class Where:
    netns: str  # label
    netns_id: int
    interface: str
    hook: str  # "clsact/ingress" ...: the hook CWS sits on (the culprit may be on tcx/*)


@dataclass(frozen=True)
class BlindSpot:
    where: Where
    culprit_hook: str  # where the hiding entry hangs (tcx/ingress or clsact/ingress ...)
    pref: int | None  # None: a TCX program
    vendor: str | None
    program_id: int | None
    certain: bool  # False: the verdict is unknown, it MAY hide
    fixable: bool  # a lower classifier_priority gets CWS ahead of it
    reason: str
    cause: str = ""  # advice/causes.py CAUSES: why it blinds CWS (set by recommend)
    verbs: tuple[str, ...] = ()  # what it can do that hides: "pass", "accept", "redirect"


@dataclass(frozen=True)
class Finding:
    level: str  # "blind" or "warning"
    kind: str  # blind | unknown-verdict | drop-only | pref-collision | destructive-vendor
    # | cws-missing | cws-impostor | cws-ends-chain
    message: str
    where: Where | None = None
    pref: int | None = None
    vendor: str | None = None


@dataclass(frozen=True)
class Alternative:
    kind: str  # "accept-blind-spots" | "move-vendor"
    description: str
    classifier_priority: int | None = None
    vendor: str | None = None
    setting: str | None = None
    remaining_blind: int = 0


@dataclass(frozen=True)
class NamespaceSummary:
    netns: str
    netns_id: int
    hooks: int  # hooks CWS attaches to in it
    blind: int  # hooks blind at the current priority
    unfixable: int  # hooks blind at every priority
    vendors: tuple[str, ...]


@dataclass(frozen=True)
class Recommendation:
    action: str  # "keep" | "set-priority" | "disable-network"
    classifier_priority: int | None  # what to set (keep: the current one; disable: None)
    current_priority: int
    priority_source: str  # "detected" | "configured" | "agent-config" | "assumed"
    cws_detected: bool
    hooks: int
    blind: tuple[BlindSpot, ...]  # at the current priority
    alternatives: tuple[Alternative, ...]
    findings: tuple[Finding, ...]
    namespaces: tuple[NamespaceSummary, ...]
    snippets: dict[str, str]
    notes: tuple[str, ...]
    summary: str
    cws_agents: tuple[CwsAgent, ...] = ()  # every running system-probe's configuration
    cws_config: CwsAgent | None = None  # the one in effect (exactly one system-probe)
    # (vendor or "unknown", hook, effective verdict words or "unknown", how many)
    classifiers: tuple[tuple[str, str, str, int], ...] = ()
    generated_at: float = 0.0  # time.time() when it was made
    causes: tuple[Cause, ...] = ()  # why the blind spots are blind, per culprit (causes.py)


def _is_cws_entry(entry: Entry) -> bool:
    """CWS's own filter: attributed to it AND behaving like it (vendors/cws.py)."""
    return trusted(entry)


def _ignored(entry: Entry) -> bool:
    """Entries that never compete with CWS: its own, tcaudit's observers (known by the
    probe's records, inventory/observers.py: never by a name), unreachable chains."""
    return _is_cws_entry(entry) or entry.observer or not entry.reachable


def _vendor_name(entry: Entry) -> str | None:
    return entry.vendor.name if entry.vendor else None


@dataclass(frozen=True)
class _Ender:
    """An entry that may end the chain, seen from CWS's hook."""

    entry: Entry
    hook: str
    certain: bool
    why: str
    verbs: tuple[str, ...] = ()


def _label(entry: Entry) -> str:
    """How a message names an entry: its filter's name, else its program's, else its kind."""
    return entry.filter_name or (entry.program.name if entry.program else None) or entry.kind


def _can(entry: Entry) -> str:
    """What an entry's verdict says it can do, for a message."""
    words = entry.verdict.effective if entry.verdict else None
    return f"can {'|'.join(words)}" if words is not None else "has a verdict tcaudit cannot tell"


def _ender(entry: Entry, hook: str) -> _Ender | None:
    verdict = entry.verdict
    words = verdict.effective if verdict else None
    name = _label(entry)
    if words is None:
        reason = verdict.reason if verdict and verdict.reason else "verdict unknown"
        return _Ender(entry, hook, False, f"{name}: verdict unknown ({reason}), may hide")
    hiding = sorted(set(words) & HIDING)
    if hook.startswith("tcx/"):
        # tcx "accept" is TCX_PASS: it skips every clsact filter, so a TCX program that
        # can pass or redirect blinds the hook at every priority. One that can only drop
        # (or hand on) hides nothing that is delivered: a warning, like a drop-only clsact
        # filter (contracts.md as corrected: the seed asks what a vendor returns after
        # granting access)
        if hiding:
            verbs = tuple("pass" if w == "accept" else w for w in hiding)
            text = f"TCX program {name} can {'/'.join(verbs)}: it runs before every clsact filter"
            return _Ender(entry, hook, True, text, verbs)
        return None
    if hiding:
        text = f"{name} can {'/'.join(hiding)} (ends the chain)"
        return _Ender(entry, hook, True, text, tuple(hiding))
    return None


def _drop_only(entry: Entry) -> bool:
    words = entry.verdict.effective if entry.verdict else None
    return bool(words) and "drop" in (words or ()) and not set(words or ()) & HIDING


def _hook_entries(interface: Interface, direction: str) -> tuple[Hook | None, Hook | None]:
    by_name = {h.hook: h for h in interface.hooks}
    return by_name.get(f"tcx/{direction}"), by_name.get(f"clsact/{direction}")


def _ahead(tcx: Hook | None, clsact: Hook | None, priority: int) -> list[tuple[Entry, str, bool]]:
    """(entry, hook, certain) for what runs before CWS at ``priority`` on one direction.

    Every TCX program and every filter at a lower pref run first for sure. At CWS's own
    pref the run order decides: where CWS is on the hook, the filters listed before it run
    first (certain) and those after it do not (they run first only once re-added: not
    counted); where CWS is not there yet, the same-pref filters MAY run first (whoever is
    added last runs first), so they count as uncertain.
    """
    out: list[tuple[Entry, str, bool]] = []
    if tcx is not None:
        out += [(e, tcx.hook, True) for e in tcx.entries if not _ignored(e)]
    if clsact is None:
        return out
    same = [e for e in clsact.entries if e.pref == priority]
    cws_at = next((i for i, e in enumerate(same) if _is_cws_entry(e)), None)
    for entry in clsact.entries:
        if _ignored(entry) or entry.pref is None or entry.pref > priority:
            continue
        if entry.pref < priority:
            out.append((entry, clsact.hook, True))
        elif cws_at is None:
            out.append((entry, clsact.hook, False))
        elif same.index(entry) < cws_at:
            out.append((entry, clsact.hook, True))
    return out


def _collisions(clsact: Hook | None) -> set[int]:
    """Prefs CWS (bpf, protocol all) could not take on this hook."""
    if clsact is None:
        return set()
    return {
        e.pref
        for e in clsact.entries
        if e.pref is not None
        and e.chain == 0
        and (e.kind not in ("bpf", "cbpf") or e.protocol != "all")
    }


def _where(ns: NamespaceScan, interface: Interface, direction: str) -> Where:
    return Where(ns.netns.label, ns.netns.id, interface.name, f"clsact/{direction}")


def _best_priority(limit: int, collisions: set[int]) -> int | None:
    """Highest pref strictly below ``limit`` that no hook holds with another kind or
    protocol; never 0 (that is "kernel picks", and 50 inside ebpf-manager)."""
    for candidate in range(limit - 1, 0, -1):
        if candidate not in collisions:
            return candidate
    return None


def _cws_ends_chain(entry: Entry, interface: Interface, hook: Hook, netns: Netns) -> Finding:
    """CWS's own classifier (its program held by system-probe) that can end the chain:
    with raw-packet rules loaded, its generated filters accept what they do not match."""
    name = _label(entry)
    later = hook.entries[hook.entries.index(entry) + 1:] if entry in hook.entries else ()
    own = any(trusted(e) and e.verdict is not None and e.verdict.ends_chain is False
              for e in later)
    after = ("classifiers after it on this hook, CWS's own main classifier among them,"
             if own else "classifiers after it on this hook")
    return Finding(
        "warning",
        "cws-ends-chain",
        f"{interface.name} {hook.hook} in {netns.label}: CWS's own {name} at pref {entry.pref} "
        f"(held by system-probe) {_can(entry)}: {after} do not see the packets it ends the chain "
        "for (system-probe's raw-packet rules; docs/agent-config.md)",
        Where(netns.label, netns.id, interface.name, hook.hook),
        entry.pref,
        CWS_VENDOR,
    )


def _unmask_impostors(scan: Scan, findings: list[Finding]) -> Scan:
    """Entries named like CWS whose verdict says otherwise count like any classifier (of
    unknown owner), each with a ``cws-impostor`` warning naming it."""

    def unmask(entry: Entry, interface: Interface, hook: Hook, netns: Netns) -> Entry:
        if trusted(entry) and entry.verdict is not None and entry.verdict.ends_chain is not False:
            findings.append(_cws_ends_chain(entry, interface, hook, netns))
        if not impostor(entry):
            return entry
        name = _label(entry)
        place = f"pref {entry.pref}" if entry.pref is not None else "TCX"
        findings.append(
            Finding(
                "warning",
                "cws-impostor",
                f"{interface.name} {hook.hook} in {netns.label}: {name} at {place} is named like "
                f"Datadog CWS but {_can(entry)}, which CWS's classifiers never do: counted like "
                "any other classifier",
                Where(netns.label, netns.id, interface.name, hook.hook),
                entry.pref,
            )
        )
        return replace(entry, vendor=None)

    return map_entries(scan, unmask)


def recommend(
    scan: Scan, priority: int | None = None, agents: tuple[CwsAgent, ...] = ()
) -> Recommendation:
    """The answer for the selected namespaces. ``priority``: the configured one to
    evaluate (default: the one CWS uses on this node, else the running system-probe's
    configured one, else 10). ``agents``: every running system-probe's configuration
    (inventory/cws_agents.py; none when reading snapshots)."""
    detected, cws_count = detect_priority(scan)
    impostors: list[Finding] = []
    scan = _unmask_impostors(scan, impostors)
    findings: list[Finding | int] = [*impostors]  # an int: blind[int]'s finding, made below
    config = in_effect(agents)
    if priority is not None:
        current, source = priority, "configured"
    elif detected is not None:
        current, source = detected, "detected"
    elif config is not None:
        current, source = config.classifier_priority, "agent-config"
    else:
        current, source = DEFAULT_PRIORITY, "assumed"
    findings += [Finding("warning", n.kind, n.message) for n in agent_notes(agents, detected)]

    blind: list[BlindSpot] = []
    collisions: set[int] = set()
    enders_by_hook: list[tuple[Where, list[_Ender]]] = []
    summaries: list[NamespaceSummary] = []
    total_hooks = 0
    cws_hooks = 0
    destructive: dict[str, VendorMatch] = {}

    for ns in scan.namespaces:
        ns_hooks = 0
        ns_vendors: set[str] = set()
        for interface in ns.interfaces:
            for direction in DIRECTIONS:
                tcx, clsact = _hook_entries(interface, direction)
                if clsact is None and tcx is None:
                    continue
                where = _where(ns, interface, direction)
                total_hooks += 1
                ns_hooks += 1
                hook_collisions = _collisions(clsact)
                collisions |= hook_collisions
                all_entries = [*(tcx.entries if tcx else ()), *(clsact.entries if clsact else ())]
                if any(_is_cws_entry(e) for e in all_entries):
                    cws_hooks += 1
                for entry in all_entries:
                    if entry.vendor and not trusted(entry):
                        ns_vendors.add(entry.vendor.name)
                        if _habits(entry.vendor):
                            destructive.setdefault(entry.vendor.name, entry.vendor)
                if current in hook_collisions:
                    findings.append(
                        Finding(
                            "warning",
                            "pref-collision",
                            f"pref {current} is held by a non-bpf or non-'all' filter: CWS cannot "
                            "attach there",
                            where,
                            current,
                        )
                    )
                # every potential chain-ender on this direction, whatever its pref
                enders = [
                    found
                    for entry, hook_name in _all_candidates(tcx, clsact)
                    if (found := _ender(entry, hook_name)) is not None
                ]
                enders_by_hook.append((where, enders))
                ahead = _ahead(tcx, clsact, current)
                ahead_ids = {id(e): certain for e, _, certain in ahead}
                for found in enders:
                    if id(found.entry) not in ahead_ids:
                        continue
                    certain = found.certain and ahead_ids[id(found.entry)]
                    why = found.why
                    if found.certain and not certain:
                        why += f" (at CWS's pref {current}: it runs first if added after CWS)"
                    blind.append(
                        BlindSpot(
                            where=where,
                            culprit_hook=found.hook,
                            pref=found.entry.pref,
                            vendor=_vendor_name(found.entry),
                            program_id=found.entry.program.id if found.entry.program else None,
                            certain=certain,
                            fixable=True,  # decided below, against every hook's collisions
                            reason=why,
                            cause="" if found.certain else "unknown-verdict",
                            verbs=found.verbs,
                        )
                    )
                    findings.append(len(blind) - 1)  # its finding, once its cause is known
                for entry, _hook_name, _certain in ahead:
                    if _drop_only(entry):
                        findings.append(
                            Finding(
                                "warning",
                                "drop-only",
                                f"{where.interface} {where.hook} in {where.netns}: "
                                f"{entry.filter_name or entry.kind} ahead of CWS can drop packets "
                                "(dropped traffic is never delivered, so nothing is hidden)",
                                where,
                                entry.pref,
                                _vendor_name(entry),
                            )
                        )
        summaries.append(
            NamespaceSummary(ns.netns.label, ns.netns.id, ns_hooks, 0, 0, tuple(sorted(ns_vendors)))
        )

    for name, match in sorted(destructive.items()):
        findings.append(
            Finding(
                "warning",
                "destructive-vendor",
                f"{name} is present and is known to: {', '.join(_habits(match))}",
                vendor=name,
            )
        )
    if cws_count and cws_hooks < total_hooks:
        findings.append(
            Finding(
                "warning",
                "cws-missing",
                f"CWS filters were found on {cws_hooks} of {total_hooks} hooks: the others are "
                "not watched (interfaces created since system-probe started, or a race)",
            )
        )

    # a spot is fixable when some priority below its culprit is free on EVERY hook: CWS
    # uses one priority everywhere
    blind = [_with_cause(b, collisions, current) for b in blind]
    summaries = [_summarise(summary, blind) for summary in summaries]
    fixable_limit = _lowest_fixable_ender(enders_by_hook, collisions)
    unfixable = [b for b in blind if not b.fixable]
    if (fixable_limit is None or current < fixable_limit) and current not in collisions:
        best_all: int | None = current  # the current priority already serves the rest
    else:
        best_all = _best_priority(fixable_limit or current + 1, collisions)
    if not blind:
        action, chosen = "keep", current
    elif not unfixable and best_all is not None:
        action, chosen = "set-priority", best_all
    else:
        action, chosen = "disable-network", None

    alternatives = _alternatives(action, blind, best_all, current, scan)
    notes = _notes(source, current, detected, cws_count)
    if config is not None and action != "keep":
        key = "enabled" if action == "disable-network" else "classifier_priority"
        notes += (f"Change it where system-probe takes it from: {where_set(config, key)}.",)
    rec = Recommendation(
        action=action,
        classifier_priority=chosen,
        current_priority=current,
        priority_source=source,
        cws_detected=cws_count > 0,
        hooks=total_hooks,
        blind=tuple(blind),
        alternatives=alternatives,
        findings=tuple(f if isinstance(f, Finding) else _blind_finding(blind[f]) for f in findings),
        namespaces=tuple(summaries),
        snippets=located(snippets(action, chosen), config, action),
        notes=notes,
        summary="",
        cws_agents=agents,
        cws_config=config,
        classifiers=_classifiers(scan),
        generated_at=time.time(),
        causes=tally(blind),
    )
    return replace(rec, summary=summary(rec))


def _classifiers(scan: Scan) -> tuple[tuple[str, str, str, int], ...]:
    """What runs on the hooks, counted by vendor, hook and verdict (tcaudit's own
    observers left out): the Agent check's ``tcaudit.tc.classifiers`` gauge."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            for hook in interface.hooks:
                for entry in hook.entries:
                    if entry.observer:
                        continue
                    words = entry.verdict.effective if entry.verdict else None
                    counts[
                        (
                            entry.vendor.name if entry.vendor else "unknown",
                            hook.hook,
                            "|".join(words) if words else "unknown",
                        )
                    ] += 1
    return tuple((*key, n) for key, n in sorted(counts.items()))


def _all_candidates(tcx: Hook | None, clsact: Hook | None) -> Iterable[tuple[Entry, str]]:
    if tcx is not None:
        yield from ((e, tcx.hook) for e in tcx.entries if not _ignored(e))
    if clsact is not None:
        yield from ((e, clsact.hook) for e in clsact.entries if not _ignored(e))


def _lowest_fixable_ender(
    enders_by_hook: list[tuple[Where, list[_Ender]]], collisions: set[int]
) -> int | None:
    prefs = [
        found.entry.pref
        for _, enders in enders_by_hook
        for found in enders
        if found.entry.pref is not None and _best_priority(found.entry.pref, collisions)
    ]  # pref-1 enders cannot be fixed: nothing goes below them
    return min(prefs) if prefs else None


def _summarise(summary: NamespaceSummary, blind: list[BlindSpot]) -> NamespaceSummary:
    mine = [b for b in blind if b.where.netns_id == summary.netns_id]
    hooks = {(b.where.interface, b.where.hook) for b in mine}
    stuck = {(b.where.interface, b.where.hook) for b in mine if not b.fixable}
    return replace(summary, blind=len(hooks), unfixable=len(stuck))


def _habits(match: VendorMatch) -> tuple[str, ...]:
    return tuple(getattr(match.fingerprint, "habits", ()) or ())


def _alternatives(
    action: str, blind: list[BlindSpot], best: int | None, current: int, scan: Scan
) -> tuple[Alternative, ...]:
    if action != "disable-network":
        return ()
    remaining = [b for b in blind if not b.fixable]
    hooks_left = len({(b.where.netns_id, b.where.interface, b.where.hook) for b in remaining})
    out = [
        Alternative(
            kind="accept-blind-spots",
            description=(
                f"keep network detections and accept that CWS cannot see traffic on "
                f"{hooks_left} hook(s) (listed under 'blind', fixable=false); "
                + (
                    f"set classifier_priority {best} for the other hooks"
                    if best is not None
                    else "no priority helps the other hooks either"
                )
            ),
            classifier_priority=best,
            remaining_blind=hooks_left,
        )
    ]
    knobs: dict[str, str] = {}
    for spot in remaining:
        if spot.vendor is None:
            continue
        knob = _knob_for(scan, spot)
        if knob:
            knobs.setdefault(spot.vendor, knob)
    for vendor, knob in sorted(knobs.items()):
        setting = re.sub(r"\bN\b|\{priority\}", str(current + 1), knob)
        value_note = (
            f" (any pref above CWS's classifier_priority {current})" if setting != knob else ""
        )
        out.append(
            Alternative(
                kind="move-vendor",
                description=(
                    f"reconfigure {vendor} so that it runs after CWS: {setting}{value_note}, "
                    "then restart it"
                ),
                vendor=vendor,
                setting=setting,
            )
        )
    return tuple(out)


def _knob_for(scan: Scan, spot: BlindSpot) -> str | None:
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            for hook in interface.hooks:
                for entry in hook.entries:
                    if (
                        entry.vendor
                        and entry.vendor.name == spot.vendor
                        and entry.program
                        and entry.program.id == spot.program_id
                    ):
                        knob = getattr(entry.vendor.fingerprint, "knob", None)
                        return str(knob) if knob else None
    return None


def _notes(source: str, current: int, detected: int | None, count: int) -> tuple[str, ...]:
    notes = []
    if source == "detected":
        notes.append(f"CWS was found on this node at pref {current} ({count} filters).")
    elif source == "agent-config":
        notes.append(
            f"CWS was not found on the selected hooks: its configured priority {current} "
            "(the running system-probe's configuration) was evaluated."
        )
    elif source == "configured":
        extra = f" (CWS itself is at pref {detected})" if detected is not None else ""
        notes.append(f"Evaluated for classifier_priority {current} as asked{extra}.")
    else:
        notes.append(
            f"CWS was not found on the selected hooks: assumed its default priority {current}."
        )
    notes.append(
        "Pref 1 is never safe: a filter added later at the same pref runs before older ones."
    )
    notes.append(
        "A priority of 0 becomes 50 inside ebpf-manager (DefaultTCFilterPriority): never set 0."
    )
    return tuple(notes)


def _with_cause(spot: BlindSpot, collisions: set[int], priority: int) -> BlindSpot:
    """A spot is fixable when some priority below its culprit is free on EVERY hook (CWS
    uses one priority everywhere); its cause follows (causes.py)."""
    fixable = spot.pref is not None and _best_priority(spot.pref, collisions) is not None
    cause = spot.cause or cause_kind(
        culprit_hook=spot.culprit_hook,
        pref=spot.pref,
        verdict_known=True,
        fixable=fixable,
        priority=priority,
    )
    return replace(spot, fixable=fixable, cause=cause)


def _blind_finding(spot: BlindSpot) -> Finding:
    """A blind spot's finding: where, the culprit's own reason, then its cause."""
    where = spot.where
    because = consequence(spot.cause, spot.pref)
    return Finding(
        "blind" if spot.certain else "warning",
        "blind" if spot.certain else "unknown-verdict",
        f"{where.interface} {where.hook} in {where.netns}: {spot.reason}; {because}",
        where,
        spot.pref,
        spot.vendor,
    )


def _hooks(spots: Iterable[BlindSpot]) -> int:
    return len({(b.where.netns_id, b.where.interface, b.where.hook) for b in spots})


def summary(rec: Recommendation) -> str:
    """The headline: the action, and each culprit's cause with its count of hooks."""
    if rec.action == "keep":
        return (
            f"Keep classifier_priority {rec.current_priority}: no classifier ahead of CWS can "
            f"end the chain on any of the {rec.hooks} hooks it attaches to."
        )
    if rec.action == "set-priority":
        return (
            f"Set classifier_priority to {rec.classifier_priority}: at "
            f"{rec.current_priority}, CWS is blind on {_hooks(rec.blind)} of {rec.hooks} hooks "
            f"({sentence(rec.causes)}); at {rec.classifier_priority} it runs ahead of every "
            "chain-ending classifier."
        )
    stuck = [c for c in rec.causes if not c.fixable]
    rest = [c for c in rec.causes if c.fixable]
    text = (
        f"Disable CWS network detections: {_hooks(b for b in rec.blind if not b.fixable)} of "
        f"{rec.hooks} hooks stay blind at every priority ({sentence(stuck)})."
    )
    if rest:
        text += (
            f" A lower priority would fix {_hooks(b for b in rec.blind if b.fixable)} more "
            f"({sentence(rest)})."
        )
    return text + " The alternatives keep network detections with known blind spots."
