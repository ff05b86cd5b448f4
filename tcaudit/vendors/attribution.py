"""Vendor fingerprints and attribution: who put each classifier on a hook.

The registry is data: ``tcaudit/vendors/vendors.json`` (shipped) plus any files given with
``--vendors FILE``. Its facts come from shared/reference/vendors.md (every row of its table,
with the sources it names) and datadog-cws.md:

- Cilium 1.9-1.12 (``tc filter replace``; filter names ``bpf_lxc.o:[from-container]``,
  ``bpf_host.o:[...]``; maps ``cilium_calls_*``, ``cilium_ct4_glob*``, ``cilium_lxc``),
  1.13 and 1.14-1.15 (netlink; ``cil_from_contai``...; filter name ``<fn>-<ifname>``),
  1.16+ (TCX by default, ``--enable-tcx``; removes legacy filters after attaching TCX);
  knob ``--bpf-filter-priority`` from 1.12, backported to 1.10. Conflicts: cilium/cilium
  21345, 36172, 41393.
- Calico eBPF 3.13-3.20 (``from_wep_info.o:[calico_from_workload_ep]``; 3.13-3.15 re-add
  clsact), 3.21-3.26 (libbpf ``<kname>:[<id>]``), 3.27+ (``cali_tc_preambl``, ``cali_jump*``),
  3.31+ TCX at the tail.
- AWS network policy agent 1.0.1-1.4.x (``handle_ingress``/``handle_egress``, maps
  ``aws_conntrack_map``, ``policy_events``; pref 1 / handle 1, not configurable; deletes
  handle-1 filters; aws-network-policy-agent 480).
- Microsoft Retina < 0.0.8 (returns OK, deletes clsact; retina 252, PR 276), 0.0.8+ (UNSPEC),
  1.2.0+ TCX at the head (``enableTCX``; retina 1958).
- Inspektor Gadget 0.25+ (``ig_net_disp``), Aqua Tracee 0.6-0.10 (``tc_ingress``/``tc_egress``;
  tracee 1828), Istio ambient ebpf mode 1.18-1.20, Elastic host isolation (``tc_filter``),
  Grafana Beyla (UNSPEC since PR 1541), GitHub Azure runner images (``tc_egress_traffic``).
- Datadog CWS 7.39.2+ (datadog-agent PR 13692, backport 13762; ebpf-manager PRs 65-67):
  filter names ``classifier_<section>_<UID>_<pid>``, programs ``classifier_ingr``,
  ``classifier_egre``, ``classifier_raw_``, held by ``system-probe``, pref 10; and the
  7.36.0-7.39.1 agents with their hard-coded pref 1 (the race of the seed document).

The registry file format is described in ``registry``.

Attribution (:func:`attribute`): each fingerprint scores the entry. Strong matchers are the
filter name, the program name, a map name and a holder's comm; weak ones are the interface,
the hook, the namespace kind, the default pref/handle, and the accept verdict being among the
values the program can return (a known verdict set WITHOUT it counts against). A fingerprint
with a strong hit is a candidate; without one it is a candidate only when its interface
pattern, hook, namespace and default position all fit, no verified matcher contradicts the
entry, and neither the fingerprint nor its interface pattern is unverified. Confidence:
"high" for two or more distinct strong matchers, "medium" for one, "low" for position only.
A fixed-pref vendor (``pref_fixed``) is never the owner of a filter at another pref. The
vendor with the best (strong, weak) score wins (ties: registry order); fingerprints of that
vendor tied at the best score are merged (version ranges joined, e.g. 1.13 + 1.14-1.15 +
1.16+ -> "1.13+"; habits and notes united); a position-only (low) match merges every fitting
fingerprint of the vendor, since position says little about the version. Evidence strings
come from the best fingerprint, labelled with the merged version range.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from tcaudit.model import (
    Entry,
    Fingerprint,
    Holder,
    Hook,
    Interface,
    Matchers,
    Netns,
    Scan,
    VendorMatch,
    map_entries,
)
from tcaudit.vendors.cws import CWS_VENDOR
from tcaudit.vendors.registry import (
    VERDICT_VALUES,
    load_registry,
    version_key,
    version_range,
)

__all__ = [
    "Fingerprint",
    "Matchers",
    "VendorMatch",
    "add_vendors",
    "attribute",
]

KERNEL_PICKED_PREFS: Final = range(0x8000, 0xC001)
"""Prefs the kernel hands out when asked for pref 0: 0xC000 (49152), then downwards."""

_PID_SUFFIX = re.compile(r".*_(\d+)")


# --- attribution ---------------------------------------------------------------------------

_WHO = "\x00who\x00"


@dataclass(frozen=True)
class _Hit:
    kind: str
    strong: bool
    text: str  # _WHO stands for the fingerprint's label
    scored: int = 1  # +1 a hit, -1 evidence against, 0 context only


@functools.lru_cache(maxsize=8192)
def _fits(patterns: tuple[re.Pattern[str], ...], value: str) -> bool:
    """Cached: the same program, map and holder names recur on hundreds of hooks."""
    return any(p.fullmatch(value) for p in patterns)


def _first_match(patterns: Sequence[re.Pattern[str]], values: Sequence[str]) -> str | None:
    if not patterns:
        return None
    key = tuple(patterns)
    for value in values:
        if _fits(key, value):
            return value
    return None


def _suffix(fp: Fingerprint, kind: str) -> str:
    return " (unverified pattern)" if kind in fp.matchers.unverified else ""


@dataclass(frozen=True)
class _Names:
    """The names of one entry that strong matchers look at, gathered once per entry."""

    filter_name: tuple[str, ...]
    program_name: tuple[str, ...]
    map_name: tuple[str, ...]
    holders: tuple[Holder, ...]

    @classmethod
    def of(cls, entry: Entry) -> _Names:
        program = entry.program
        return cls(
            filter_name=(entry.filter_name,) if entry.filter_name else (),
            program_name=(program.name,) if program and program.name else (),
            map_name=tuple(r.name for r in program.maps if r.name) if program else (),
            holders=program.holders if program else (),
        )


def _strong_hits(fp: Fingerprint, names: _Names) -> list[_Hit]:
    m = fp.matchers
    hits: list[_Hit] = []
    if names.filter_name and _first_match(m.filter_name, names.filter_name):
        text = f'filter name "{names.filter_name[0]}" matches {_WHO}'
        hits.append(_Hit("filter_name", True, text + _suffix(fp, "filter_name")))
    if names.program_name and _first_match(m.program_name, names.program_name):
        text = f'program name "{names.program_name[0]}" matches {_WHO}'
        hits.append(_Hit("program_name", True, text + _suffix(fp, "program_name")))
    map_name = _first_match(m.map_name, names.map_name) if names.map_name else None
    if map_name:
        text = f'map "{map_name}" matches {_WHO}'
        hits.append(_Hit("map_name", True, text + _suffix(fp, "map_name")))
    if names.holders and m.holder_comm:
        holders = [h for h in names.holders if _first_match(m.holder_comm, (h.comm,))]
        if holders:
            who = ", ".join(f"{h.comm}[{h.pid}]" for h in holders[:3])
            more = f" and {len(holders) - 3} more" if len(holders) > 3 else ""
            text = f"held by {who}{more}" + _suffix(fp, "holder_comm")
            hits.append(_Hit("holder_comm", True, text))
    return hits


def _contradicted(fp: Fingerprint, entry: Entry) -> bool:
    """A verified matcher of ``fp`` that the entry's own names fail."""
    m = fp.matchers
    program = entry.program
    values: dict[str, list[str]] = {
        "filter_name": [entry.filter_name] if entry.filter_name else [],
        "program_name": [program.name] if program and program.name else [],
        "map_name": [r.name for r in program.maps if r.name] if program else [],
        "holder_comm": [h.comm for h in program.holders] if program else [],
    }
    for kind, seen in values.items():
        patterns = m.patterns(kind)
        if seen and patterns and kind not in m.unverified and not _first_match(patterns, seen):
            return True
    return False


def _netns_fits(kind: str, netns: Netns) -> bool:
    return kind == "any" or (kind == "host") == netns.is_self


def _weak_hits(
    fp: Fingerprint, entry: Entry, interface: Interface, hook: Hook, netns: Netns
) -> list[_Hit]:
    m = fp.matchers
    hits: list[_Hit] = []
    if m.interface and _first_match(m.interface, [interface.name]):
        text = f"interface {interface.name} fits {_WHO}" + _suffix(fp, "interface")
        hits.append(_Hit("interface", False, text))
    if m.hook and hook.hook in m.hook:
        hits.append(_Hit("hook", False, f"on {hook.hook}, where {_WHO} attaches"))
    if m.netns != "any" and _netns_fits(m.netns, netns):
        where = "the host namespace" if m.netns == "host" else "a pod namespace"
        hits.append(_Hit("netns", False, f"in {where}, where {_WHO} attaches"))
    if fp.attach == "clsact" and entry.pref is not None:
        if fp.default_pref is not None and entry.pref == fp.default_pref:
            hits.append(_Hit("pref", False, f"pref {entry.pref} is {_WHO}'s default"))
        elif fp.default_pref is None and entry.pref in KERNEL_PICKED_PREFS:
            text = f"pref {entry.pref} looks kernel-picked, as {_WHO}'s is"
            hits.append(_Hit("pref", False, text))
        if fp.default_handle is not None and entry.handle == fp.default_handle:
            text = f"handle 0x{entry.handle:x} is {_WHO}'s default"
            hits.append(_Hit("handle", False, text))
    verdict = entry.verdict
    returns = (verdict.may_return(VERDICT_VALUES[fp.accept_verdict])
               if fp.accept_verdict and verdict is not None else None)
    if fp.accept_verdict and returns is not None:
        value = VERDICT_VALUES[fp.accept_verdict]
        if returns:
            text = f"can return {fp.accept_verdict} ({value}), as {_WHO} does"
            hits.append(_Hit("verdict", False, text))
        else:
            text = f"never returns {fp.accept_verdict} ({value}), unlike {_WHO}"
            hits.append(_Hit("verdict", False, text, scored=-1))
    return hits


def _position_fits(fp: Fingerprint, entry: Entry, kinds: set[str]) -> bool:
    """Without names: interface, hook, namespace and default position must all fit, and
    both the fingerprint and its interface pattern must be checked against source."""
    m = fp.matchers
    if entry.kind not in ("bpf", "tcx") or "interface" not in kinds:
        return False
    if fp.certainty == "unverified" or "interface" in m.unverified:
        return False
    if (m.hook and "hook" not in kinds) or (m.netns != "any" and "netns" not in kinds):
        return False
    if fp.attach == "tcx":
        return entry.kind == "tcx"
    if entry.kind != "bpf" or "pref" not in kinds:
        return False
    return fp.default_handle is None or "handle" in kinds


def _pref_excluded(fp: Fingerprint, entry: Entry) -> bool:
    """A vendor that can only use one pref did not put a filter at another."""
    return (
        fp.pref_fixed
        and fp.default_pref is not None
        and entry.pref is not None
        and entry.pref != fp.default_pref
    )


def _assess(
    fp: Fingerprint,
    entry: Entry,
    interface: Interface,
    hook: Hook,
    netns: Netns,
    strong: list[_Hit],
) -> list[_Hit] | None:
    """The hits of ``fp`` on the entry, or None when ``fp`` cannot be its owner."""
    weak = _weak_hits(fp, entry, interface, hook, netns)
    if strong:
        return strong + weak
    kinds = {h.kind for h in weak if h.scored > 0}
    if any(h.scored < 0 for h in weak) or _contradicted(fp, entry):
        return None
    if not _position_fits(fp, entry, kinds):
        return None
    return weak


def _score(hits: Sequence[_Hit]) -> tuple[int, int]:
    strong = len({h.kind for h in hits if h.strong})
    return strong, sum(h.scored for h in hits if not h.strong)


def _merge_versions(versions: Sequence[str | None]) -> str | None:
    if len(set(versions)) == 1:
        return versions[0]
    ranges = [version_range(v) if v else None for v in versions]
    if any(r is None for r in ranges):
        return " or ".join(dict.fromkeys(v for v in versions if v)) or None
    lows = [r[0] for r in ranges if r is not None]
    highs = [(r[1], r[2]) for r in ranges if r is not None]
    low = None if None in lows else min((v for v in lows if v), key=_sort_key)
    high: tuple[str | None, bool] = (None, False)
    if all(h[0] is not None for h in highs):
        high = max(highs, key=lambda h: (_sort_key(h[0] or ""), not h[1]))
    if low is None and high[0] is None:
        return None
    if high[0] is None:
        return f"{low}+"
    if low is None:
        return f"{'<' if high[1] else '<='}{high[0]}"
    return low if low == high[0] else f"{low}-{high[0]}"


def _sort_key(text: str) -> tuple[int, ...]:
    return version_key(text) or ()


@functools.lru_cache(maxsize=256)
def _merge(fingerprints: tuple[Fingerprint, ...]) -> Fingerprint:
    """One fingerprint standing for several tied ones of the same vendor (cached: the
    same ties recur on every hook a vendor uses)."""
    first = fingerprints[0]
    if len(fingerprints) == 1:
        return first

    knobbed = next((f for f in fingerprints if f.knob), first)

    def union(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for group in values for v in group))

    return replace(
        first,
        id=",".join(f.id for f in fingerprints),
        versions=_merge_versions([f.versions for f in fingerprints]),
        sources=union([f.sources for f in fingerprints]),
        habits=union([f.habits for f in fingerprints]),
        notes=union([f.notes for f in fingerprints]),
        other_verdicts=union([f.other_verdicts for f in fingerprints]),
        knob=knobbed.knob,
        knob_note=knobbed.knob_note,
    )


def _pid_evidence(fp: Fingerprint, entry: Entry) -> list[str]:
    """CWS filter names end with system-probe's pid: say whether a holder has it."""
    if fp.vendor != CWS_VENDOR or not entry.filter_name:
        return []
    found = _PID_SUFFIX.fullmatch(entry.filter_name)
    if not found:
        return []
    pid = int(found.group(1))
    holders = entry.program.holders if entry.program else ()
    for holder in holders:
        if holder.pid == pid:
            return [f"filter name carries the pid of its holder {holder.comm}[{pid}]"]
    return [f"filter name carries pid {pid} (system-probe's pid when it attached)"]


_STRONG_KINDS = ("filter_name", "program_name", "map_name", "holder_comm")


class _Index:
    """Which fingerprints a name can match, per matcher kind, cached per name: the same
    program, map and holder names recur on hundreds of hooks, so a scan of a busy node
    tests each name against the registry once."""

    def __init__(self, registry: Sequence[Fingerprint]) -> None:
        self.registry = registry
        self._patterns = {
            kind: [
                (i, fp.matchers.patterns(kind))
                for i, fp in enumerate(registry)
                if fp.matchers.patterns(kind)
            ]
            for kind in _STRONG_KINDS
        }
        self._cache: dict[tuple[str, str], tuple[int, ...]] = {}

    def _hits(self, kind: str, value: str) -> tuple[int, ...]:
        key = (kind, value)
        found = self._cache.get(key)
        if found is None:
            found = tuple(
                i
                for i, patterns in self._patterns[kind]
                if any(p.fullmatch(value) for p in patterns)
            )
            self._cache[key] = found
        return found

    def strong_candidates(self, names: _Names) -> set[int]:
        """Indexes of the fingerprints with at least one strong matcher hit."""
        out: set[int] = set()
        for value in names.filter_name:
            out.update(self._hits("filter_name", value))
        for value in names.program_name:
            out.update(self._hits("program_name", value))
        for value in names.map_name:
            out.update(self._hits("map_name", value))
        for holder in names.holders:
            out.update(self._hits("holder_comm", holder.comm))
        return out


def attribute(
    entry: Entry,
    interface: Interface,
    hook: Hook,
    netns: Netns,
    registry: Sequence[Fingerprint],
    cache: _Index | None = None,
) -> VendorMatch | None:
    """The vendor that most likely put ``entry`` there, or None (unknown owner).

    ``cache`` (from add_vendors) caches name matching across the entries of one scan.
    """
    cache = cache or _Index(registry)
    names = _Names.of(entry)
    allowed = [i for i in range(len(registry)) if not _pref_excluded(registry[i], entry)]
    strong_ids = cache.strong_candidates(names).intersection(allowed)
    # a fingerprint with a strong hit always outscores every position-only one, so when
    # any has one the others need no (costly) weak assessment
    pool = sorted(strong_ids) if strong_ids else allowed
    candidates = [
        (i, registry[i], _strong_hits(registry[i], names) if strong_ids else []) for i in pool
    ]
    scored: list[tuple[tuple[int, int], int, Fingerprint, list[_Hit]]] = []
    for index, fp, strong_hits in candidates:
        hits = _assess(fp, entry, interface, hook, netns, strong_hits)
        if hits is not None:
            scored.append((_score(hits), index, fp, hits))
    if not scored:
        return None
    best_score, _, winner, hits = max(scored, key=lambda s: (s[0], -s[1]))
    # position-only matches say nothing about the version: keep every one of that vendor
    tied = [
        s
        for s in scored
        if s[2].vendor == winner.vendor and (s[0] == best_score or best_score[0] == 0)
    ]
    fingerprint = _merge(tuple(s[2] for s in tied))
    strong = best_score[0]
    confidence = "high" if strong >= 2 else "medium" if strong == 1 else "low"
    label = fingerprint.label
    shown = [
        h
        for h in hits
        if strong == 0
        or h.strong
        or h.kind not in ("hook", "netns")
        or (h.kind == "hook" and fingerprint.attach == "tcx")
    ]
    evidence = [h.text.replace(_WHO, label) for h in shown]
    evidence += _pid_evidence(fingerprint, entry)
    if fingerprint.certainty == "unverified":
        evidence.append(f"{label} fingerprint is unverified")
    return VendorMatch(
        name=fingerprint.vendor,
        version_hint=fingerprint.versions,
        confidence=confidence,
        evidence=tuple(evidence),
        fingerprint=fingerprint,
    )


def add_vendors(scan: Scan, registry: Sequence[Fingerprint] | None = None) -> Scan:
    """The same scan with ``vendor`` set on every entry (None: unknown owner)."""
    fingerprints = load_registry() if registry is None else registry
    cache = _Index(fingerprints)
    return map_entries(
        scan,
        lambda e, i, h, n: replace(e, vendor=attribute(e, i, h, n, fingerprints, cache)),
    )
