"""The vendor registry's fingerprints, and an entry's attribution to one of them."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Matchers:
    """What a vendor's entries look like; every pattern is matched with ``re.fullmatch``."""

    filter_name: tuple[re.Pattern[str], ...] = ()
    program_name: tuple[re.Pattern[str], ...] = ()
    map_name: tuple[re.Pattern[str], ...] = ()
    holder_comm: tuple[re.Pattern[str], ...] = ()
    interface: tuple[re.Pattern[str], ...] = ()
    hook: tuple[str, ...] = ()  # empty: any hook
    netns: str = "any"  # "host" | "pod" | "any"
    unverified: tuple[str, ...] = ()  # matcher kinds that are guesses

    def patterns(self, kind: str) -> tuple[re.Pattern[str], ...]:
        value: tuple[re.Pattern[str], ...] = getattr(self, kind)
        return value


@dataclass(frozen=True)
class Fingerprint:
    """One vendor version range as the registry describes it."""

    id: str
    vendor: str
    versions: str | None
    certainty: str
    sources: tuple[str, ...]
    attach: str  # "clsact" | "tcx"
    default_pref: int | None  # None: the kernel picks (or TCX: no pref)
    default_handle: int | None
    pref_fixed: bool
    accept_verdict: str | None  # TC_ACT_* / TCX_* name
    other_verdicts: tuple[str, ...]
    tail_calls: bool | None
    knob: str | None  # the exact setting that moves its priority
    knob_note: str | None
    habits: tuple[str, ...]
    notes: tuple[str, ...]
    matchers: Matchers

    @property
    def label(self) -> str:
        return f"{self.vendor} {self.versions}" if self.versions else self.vendor


@dataclass(frozen=True)
class VendorMatch:
    name: str
    version_hint: str | None
    confidence: str  # "high" | "medium" | "low"
    evidence: tuple[str, ...]
    fingerprint: Fingerprint  # the best one (merged when several tie)
