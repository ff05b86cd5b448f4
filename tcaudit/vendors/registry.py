"""The vendor registry: the fingerprints shipped in ``vendors.json`` plus ``--vendors`` files.

The file format is a JSON Schema (:func:`registry_schema`), built here from the same
constants the attribution uses, so the two cannot drift. A ``--vendors`` file is checked
against it with ``jsonschema`` (already a dependency), imported only when such a file is
given: the import costs about 130 ms, and the plain scan path never pays it. What a schema
cannot say (a pattern must compile as a Python ``re``, ids are unique) is checked after it.
Every problem is one line naming the file and the JSON path, and exit code 2
(``UsageError``). The shipped file is validated against the same schema by the tests
(tests/vendors/test_vendors.py), so at run time it is trusted and only converted.

Format (a JSON object): ``{"schema": "tcaudit/vendors/v1", "fingerprints": [...]}``.
Each fingerprint: ``id`` and ``vendor`` (required), ``versions`` ("1.9-1.12", "1.16+",
"<0.0.8", "1.13" or null), ``certainty`` ("checked against source" | "unverified"; a user
file defaults to "unverified"), ``sources``, ``attach`` ("clsact" | "tcx"), ``default_pref``
and ``default_handle`` (null: the kernel picks), ``pref_fixed`` (the vendor cannot use any
other pref), ``accept_verdict`` and ``other_verdicts`` (TC_ACT_* / TCX_* names),
``tail_calls``, ``knob`` (the exact setting that moves its priority, or null) and
``knob_note``, ``habits`` (from :data:`HABITS`), ``notes``, and ``matchers``:
``filter_name``, ``program_name``, ``map_name``, ``holder_comm``, ``interface`` (lists of
Python ``re`` patterns, each matched with ``re.fullmatch``; kernel program and map names are
cut to 15 characters), ``hook`` (list of hooks; empty = any), ``netns`` ("host" = the
namespace tcaudit runs in, "pod" = any other, "any"), and ``unverified`` (matcher kinds that
are educated guesses, flagged in the evidence). A user fingerprint whose ``id`` equals an
earlier one replaces it; other fingerprints are appended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from tcaudit.errors import UsageError
from tcaudit.kernel.abi import TC_ACT_NAMES, TCX_NAMES
from tcaudit.model import HOOKS, Fingerprint, Matchers

REGISTRY_SCHEMA: Final = "tcaudit/vendors/v1"
HABITS: Final = (
    "deletes-clsact-qdisc",
    "replaces-filters",
    "removes-legacy-filters-after-tcx",
    "deletes-handle-1-filters",
)
CERTAINTIES: Final = ("checked against source", "unverified")
ATTACH_KINDS: Final = ("clsact", "tcx")
NETNS_KINDS: Final = ("host", "pod", "any")
STRONG_KINDS: Final = ("filter_name", "program_name", "map_name", "holder_comm")
PATTERN_KINDS: Final = (*STRONG_KINDS, "interface")
VERDICT_VALUES: Final[Mapping[str, int]] = MappingProxyType(
    {**{n: v for v, n in TC_ACT_NAMES.items()}, **{n: v for v, n in TCX_NAMES.items()}}
)

_VERSION = r"\d+(\.(\d+|x))*"
VERSIONS_PATTERN: Final = rf"^(<{_VERSION}|{_VERSION}(\+|-{_VERSION})?)$"
"""The forms of ``versions``: 1.9-1.12, 1.16+, <0.0.8, 1.13 (x: any)."""


_NON_EMPTY = "a non-empty string"
_MESSAGE_LIMIT = 160


class _Bad(Exception):
    """One problem in a registry document, already worded with its JSON path."""


def registry_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a registry file."""
    strings = {"type": "array", "items": {"type": "string"}}
    patterns = {"type": "array", "items": {"type": "string"}}
    nullable_str = {"type": ["string", "null"]}
    verdict = {"enum": [*VERDICT_VALUES, None]}
    matchers = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{kind: patterns for kind in PATTERN_KINDS},
            "hook": {"type": "array", "items": {"enum": list(HOOKS)}},
            "netns": {"enum": list(NETNS_KINDS)},
            "unverified": {"type": "array", "items": {"enum": list(PATTERN_KINDS)}},
        },
    }
    fingerprint = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "vendor", "matchers"],
        "properties": {
            "id": {"type": "string", "pattern": r"\S", "description": _NON_EMPTY},
            "vendor": {"type": "string", "pattern": r"\S", "description": _NON_EMPTY},
            "versions": {
                "type": ["string", "null"], "pattern": VERSIONS_PATTERN,
                "description": "a version range: 1.9-1.12, 1.16+, <0.0.8 or 1.13",
            },
            "certainty": {"enum": list(CERTAINTIES)},
            "sources": strings,
            "attach": {"enum": list(ATTACH_KINDS)},
            "default_pref": {"type": ["integer", "null"], "minimum": 1, "maximum": 0xFFFF},
            "default_handle": {
                "type": ["integer", "null"], "minimum": 0, "maximum": 0xFFFFFFFF,
            },
            "pref_fixed": {"type": "boolean"},
            "accept_verdict": verdict,
            "other_verdicts": {"type": "array", "items": {"enum": list(VERDICT_VALUES)}},
            "tail_calls": {"type": ["boolean", "null"]},
            "knob": nullable_str,
            "knob_note": nullable_str,
            "habits": {"type": "array", "items": {"enum": list(HABITS)}},
            "notes": strings,
            "matchers": matchers,
        },
    }  # fmt: skip
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": REGISTRY_SCHEMA,
        "title": "tcaudit vendor registry",
        "type": "object",
        "additionalProperties": False,
        "required": ["fingerprints"],
        "properties": {
            "schema": {"const": REGISTRY_SCHEMA},
            "about": {"type": "string"},
            "fingerprints": {"type": "array", "items": fingerprint},
        },
    }


def _validate(doc: object) -> None:
    """Raise ``_Bad`` with the most relevant schema violation of ``doc``, if any."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(registry_schema()).iter_errors(doc))
    if error is None:
        return
    message = error.message
    if error.validator == "pattern" and "description" in error.schema:
        # "'latest' does not match '^(<\\d+...'" helps nobody: say what is expected
        message = f"{error.instance!r} is not {error.schema['description']}"
    if len(message) > _MESSAGE_LIMIT:  # it quotes the offending value, maybe a whole object
        message = message[: _MESSAGE_LIMIT - 3] + "..."
    raise _Bad(f"{error.json_path}: {message}")


def _compile(raw: Mapping[str, Any], kind: str, where: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for index, text in enumerate(raw.get(kind, ())):
        try:
            compiled.append(re.compile(text))
        except re.error as err:
            raise _Bad(f"{where}.{kind}[{index}]: bad regex {text!r}: {err}") from None
    return tuple(compiled)


def _matchers(raw: Mapping[str, Any], where: str) -> Matchers:
    compiled = {kind: _compile(raw, kind, where) for kind in PATTERN_KINDS}
    if not any(compiled.values()):
        raise _Bad(f"{where}: needs at least one pattern in " + ", ".join(PATTERN_KINDS))
    return Matchers(
        filter_name=compiled["filter_name"],
        program_name=compiled["program_name"],
        map_name=compiled["map_name"],
        holder_comm=compiled["holder_comm"],
        interface=compiled["interface"],
        hook=tuple(raw.get("hook", ())),
        netns=raw.get("netns", "any"),
        unverified=tuple(raw.get("unverified", ())),
    )


def _fingerprint(raw: Mapping[str, Any], default_certainty: str, where: str) -> Fingerprint:
    return Fingerprint(
        id=raw["id"],
        vendor=raw["vendor"],
        versions=raw.get("versions"),
        certainty=raw.get("certainty", default_certainty),
        sources=tuple(raw.get("sources", ())),
        attach=raw.get("attach", "clsact"),
        default_pref=raw.get("default_pref"),
        default_handle=raw.get("default_handle"),
        pref_fixed=bool(raw.get("pref_fixed", False)),
        accept_verdict=raw.get("accept_verdict"),
        other_verdicts=tuple(raw.get("other_verdicts", ())),
        tail_calls=raw.get("tail_calls"),
        knob=raw.get("knob"),
        knob_note=raw.get("knob_note"),
        habits=tuple(raw.get("habits", ())),
        notes=tuple(raw.get("notes", ())),
        matchers=_matchers(raw["matchers"], f"{where}.matchers"),
    )


def _build(doc: Mapping[str, Any], default_certainty: str) -> tuple[Fingerprint, ...]:
    """Fingerprints of a document that passed the schema (or is the shipped file)."""
    result: list[Fingerprint] = []
    for index, raw in enumerate(doc["fingerprints"]):
        where = f"$.fingerprints[{index}]"
        fingerprint = _fingerprint(raw, default_certainty, where)
        if any(f.id == fingerprint.id for f in result):
            raise _Bad(f"{where}.id: duplicate id {fingerprint.id!r}")
        result.append(fingerprint)
    return tuple(result)


def parse_registry(text: str, default_certainty: str = "unverified") -> tuple[Fingerprint, ...]:
    """A user registry file's fingerprints; ``_Bad`` (one line) when it is malformed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Bad(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    _validate(doc)
    return _build(doc, default_certainty)


@lru_cache(maxsize=1)
def shipped_registry() -> tuple[Fingerprint, ...]:
    """The fingerprints shipped in tcaudit/vendors/vendors.json (trusted: see the tests)."""
    beside = Path(__file__).with_name("vendors.json")
    if beside.is_file():  # an installed package's files (importlib.resources costs 5 ms)
        text = beside.read_text(encoding="utf-8")
    else:  # (a zipped package)
        from importlib import resources

        text = resources.files("tcaudit.vendors").joinpath("vendors.json").read_text(
            encoding="utf-8")
    return _build(json.loads(text), "checked against source")


def load_registry(extra_files: Sequence[str | Path] = ()) -> tuple[Fingerprint, ...]:
    """The shipped fingerprints, then each user file's (an equal ``id`` replaces)."""
    registry = list(shipped_registry())
    for file in extra_files:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise UsageError(f"--vendors {path}: cannot read: {reason}") from None
        try:
            loaded = parse_registry(text)
        except _Bad as err:
            raise UsageError(f"--vendors {path}: {_one_line(str(err))}") from None
        for fingerprint in loaded:
            ids = [f.id for f in registry]
            if fingerprint.id in ids:
                registry[ids.index(fingerprint.id)] = fingerprint
            else:
                registry.append(fingerprint)
    return tuple(registry)


def _one_line(text: str) -> str:
    """A schema message quotes the offending value, which may hold newlines."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


# --- version ranges (the ``versions`` field), used when fingerprints are merged ------------


def version_key(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    if not all(p.isdigit() or p == "x" for p in parts):
        return None
    return tuple(int(p) if p.isdigit() else 1 << 30 for p in parts)


def version_range(text: str) -> tuple[str | None, str | None, bool] | None:
    """(low, high, high-exclusive) of "1.9-1.12", "1.16+", "<0.0.8", "1.13"; None if odd."""
    if text.startswith("<"):
        bounds: tuple[str | None, str | None, bool] = (None, text[1:], True)
    elif text.endswith("+"):
        bounds = (text[:-1], None, False)
    elif "-" in text:
        low, high = text.split("-", 1)
        bounds = (low, high, False)
    else:
        bounds = (text, text, False)
    if any(b is not None and version_key(b) is None for b in bounds[:2]):
        return None
    return bounds
