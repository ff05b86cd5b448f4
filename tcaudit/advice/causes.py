"""Why CWS is blind where it is: each culprit's one cause, counted in hooks.

A blind spot (recommend.BlindSpot) has exactly one cause, the first that applies:

- ``unknown-verdict``: a classifier ahead of CWS whose verdict tcaudit cannot tell (it
  may hide; a warning, not "blind");
- ``tcx``: a TCX program that can pass or redirect: TCX runs before every clsact filter,
  so no priority helps;
- ``pref-1``: a chain-ender at pref 1: nothing can be put ahead of it (pref 0 means
  "kernel picks", and a filter added later at pref 1 runs first);
- ``no-free-priority``: a chain-ender at a pref every lower priority of which some hook
  holds with a filter CWS cannot share (another kind or protocol);
- ``same-pref``: a chain-ender at CWS's own pref that runs first (added after CWS), or
  may (CWS not there yet);
- ``lower-pref``: a chain-ender at a pref below CWS's: a lower priority fixes it.

:func:`tally` counts the hooks of each (vendor, cause, pref, verbs); :func:`phrase` and
:func:`sentence` word them (the recommendation's summary, the check's and the scan's
headlines, the findings' messages), so every output names the same cause the same way.
The counts are data: JSON has them as ``causes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

CAUSES: Final = (
    "unknown-verdict",
    "tcx",
    "pref-1",
    "no-free-priority",
    "same-pref",
    "lower-pref",
)


class _Where(Protocol):
    @property
    def netns_id(self) -> int: ...

    @property
    def interface(self) -> str: ...

    @property
    def hook(self) -> str: ...


class Spot(Protocol):
    """What a cause is counted from: a recommend.BlindSpot."""

    @property
    def where(self) -> _Where: ...

    @property
    def vendor(self) -> str | None: ...

    @property
    def pref(self) -> int | None: ...

    @property
    def cause(self) -> str: ...

    @property
    def verbs(self) -> tuple[str, ...]: ...

    @property
    def certain(self) -> bool: ...

    @property
    def fixable(self) -> bool: ...


@dataclass(frozen=True)
class Cause:
    """One culprit's reason, and how many CWS hooks it blinds."""

    kind: str  # one of CAUSES
    vendor: str | None  # None: no known vendor
    pref: int | None  # the culprit's pref (None: TCX)
    verbs: tuple[str, ...]  # what it can do that hides the packet: ("pass", "redirect")
    hooks: int  # CWS hooks it blinds (netns, interface, hook)
    certain: bool  # False: it may hide (unknown verdict, or CWS not on the hook yet)
    fixable: bool  # a lower classifier_priority gets CWS ahead of it

    @property
    def level(self) -> str:
        """The level of its findings: ``blind``, or ``warning`` when it only may hide."""
        return "blind" if self.certain else "warning"


def cause_kind(
    *, culprit_hook: str, pref: int | None, verdict_known: bool, fixable: bool, priority: int
) -> str:
    """The cause of one blind spot at CWS priority ``priority`` (the first that applies)."""
    if not verdict_known:
        return "unknown-verdict"
    if culprit_hook.startswith("tcx/") or pref is None:
        return "tcx"
    if pref <= 1:
        return "pref-1"
    if not fixable:
        return "no-free-priority"
    if pref == priority:
        return "same-pref"
    return "lower-pref"


def tally(spots: Iterable[Spot]) -> tuple[Cause, ...]:
    """The causes of ``spots``, each with the number of distinct hooks it blinds; the
    most hooks first."""
    hooks: dict[tuple[str, str | None, int | None, tuple[str, ...]], set[tuple[int, str, str]]]
    hooks = {}
    certain: dict[tuple[str, str | None, int | None, tuple[str, ...]], bool] = {}
    fixable: dict[tuple[str, str | None, int | None, tuple[str, ...]], bool] = {}
    for spot in spots:
        key = (spot.cause, spot.vendor, spot.pref, spot.verbs)
        where = spot.where
        hooks.setdefault(key, set()).add((where.netns_id, where.interface, where.hook))
        certain[key] = certain.get(key, False) or spot.certain
        fixable[key] = fixable.get(key, True) and spot.fixable
    causes = [
        Cause(key[0], key[1], key[2], key[3], len(where), certain[key], fixable[key])
        for key, where in hooks.items()
    ]
    causes.sort(
        key=lambda c: (-c.hooks, CAUSES.index(c.kind), c.vendor or "~", c.pref or 0, c.verbs)
    )
    return tuple(causes)


def what(cause: Cause) -> str:
    """The culprit's reason in a few words: ``a chain-ender at pref 1``."""
    can = "/".join(cause.verbs)
    at = f"at pref {cause.pref}" if cause.pref is not None else "on TCX"
    if cause.kind == "unknown-verdict":
        thing = "a TCX program" if cause.pref is None else f"a classifier at pref {cause.pref}"
        return f"{thing} whose verdict tcaudit cannot tell (it may hide)"
    if cause.kind == "tcx":
        return f"a TCX program that can {can or 'pass'}"
    if cause.kind == "pref-1":
        return f"a chain-ender {at}"
    if cause.kind == "no-free-priority":
        return f"a chain-ender {at} that no free priority fits under"
    if cause.kind == "same-pref":
        runs = "runs" if cause.certain else "may run"
        return f"a chain-ender at CWS's own pref {cause.pref} that {runs} first"
    return f"a chain-ender {at}"


def consequence(kind: str, pref: int | None) -> str:
    """What a cause means for the priority, after the culprit's own reason in a finding."""
    return {
        "tcx": "no priority helps",
        "pref-1": "at pref 1: nothing can be put ahead of it",
        "no-free-priority": f"at pref {pref}: no free priority fits under it (every lower "
        "one is held on some hook by a filter CWS cannot share)",
        "same-pref": f"at CWS's own pref {pref}: a lower priority puts CWS ahead",
        "lower-pref": f"at pref {pref}: a lower priority puts CWS ahead",
        "unknown-verdict": "tcaudit explain shows why, tcaudit probe counts what it does",
    }[kind]


def phrase(cause: Cause) -> str:
    """``Cilium: a chain-ender at pref 1 on 248 hooks``."""
    who = cause.vendor or "unknown vendor"
    return f"{who}: {what(cause)} on {cause.hooks} hook{'s' if cause.hooks != 1 else ''}"


def sentence(causes: Iterable[Cause]) -> str:
    """Every cause's :func:`phrase`, joined with semicolons."""
    return "; ".join(phrase(c) for c in causes)
