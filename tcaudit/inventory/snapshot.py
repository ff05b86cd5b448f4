"""Snapshots: a scan document with verdicts and vendors, written by `tcaudit snapshot` and
read back by `diff` and `merge` (possibly on another machine).

Reading validates the document against the shipped schema and rebuilds the model, so the
same pure functions (recommend, findings) run on a node's file as on a live scan.
Vendor attribution is redone from the entries' evidence with the local registry.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tcaudit.errors import UsageError
from tcaudit.model import (
    Entry,
    Holder,
    Hook,
    Host,
    Interface,
    MapRef,
    NamespaceScan,
    Netns,
    Program,
    Scan,
    Verdict,
)


@cache
def schema(name: str) -> dict[str, Any]:
    """A shipped JSON Schema, e.g. schema("scan") for tcaudit/scan/v1."""
    text = resources.files("tcaudit").joinpath(f"output/schemas/{name}-v1.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def read_document(path: str | Path, expected: str) -> dict[str, Any]:
    """Load and validate a tcaudit JSON document; one clear UsageError otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(doc, dict) or doc.get("schema") != expected:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise UsageError(f"{path}: not a {expected} document (schema: {found!r})")
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - the schema key was checked above
        return doc
    try:
        jsonschema.validate(doc, schema(expected.split("/")[1]))
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise UsageError(f"{path}: invalid {expected} document at {where}: {err.message}") from None
    return doc


def _program(doc: dict[str, Any] | None) -> Program | None:
    if doc is None:
        return None
    return Program(
        id=doc["id"],
        name=doc["name"],
        tag=doc["tag"],
        type=doc["type"],
        insns=doc["insns"],
        maps=tuple(MapRef(m["id"], m["name"], m["type"]) for m in doc["maps"]),
        holders=tuple(Holder(h["pid"], h["comm"], h.get("exe")) for h in doc["holders"]),
        btf_id=doc["btf_id"],
        loaded_at=doc["loaded_at"],
        uid=doc["uid"],
        error=doc.get("error"),
    )


def _verdict(doc: dict[str, Any] | None) -> Verdict | None:
    if doc is None:
        return None
    possible = tuple(doc["possible"]) if doc["possible"] is not None else None
    ranges: tuple[tuple[int, int], ...] | None
    if doc.get("ranges") is not None:
        ranges = tuple((int(lo), int(hi)) for lo, hi in doc["ranges"])
    elif possible is not None:  # a snapshot from before ranges: derive them
        ranges = _ranges_of(possible)
    else:
        ranges = None
    return Verdict(
        possible=possible,
        effective=tuple(doc["effective"]) if doc["effective"] is not None else None,
        basis=doc["basis"],
        reason=doc["reason"],
        ranges=ranges,
    )


def _ranges_of(values: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and v <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(v, out[-1][1]))
        else:
            out.append((v, v))
    return tuple(out)


def _hex(value: str | None) -> int | None:
    return int(value, 16) if value is not None else None


def _entry(doc: dict[str, Any]) -> Entry:
    return Entry(
        pref=doc["pref"],
        handle=_hex(doc["handle"]),
        chain=doc["chain"],
        protocol=doc["protocol"],
        kind=doc["kind"],
        direct_action=doc["direct_action"],
        filter_name=doc["filter_name"],
        program=_program(doc["program"]),
        has_actions=doc.get("has_actions", False),
        classid=_hex(doc.get("classid")),
        link_id=doc.get("link_id"),
        cbpf_insns=doc.get("cbpf_insns"),
        reachable=doc.get("reachable", True),
        observer=doc.get("observer", False) is True,
        verdict=_verdict(doc.get("verdict")),
    )


def _hook(doc: dict[str, Any]) -> Hook:
    return Hook(
        hook=doc["hook"],
        supported=doc["supported"],
        entries=tuple(_entry(e) for e in doc["entries"]),
        qdisc=doc.get("qdisc"),
        block=doc.get("block"),
        block_devices=tuple(doc.get("block_devices", ())),
        revision=doc.get("revision"),
        link_ids=tuple(doc.get("link_ids", ())),
        note=doc.get("note"),
    )


def scan_from_json(doc: dict[str, Any]) -> Scan:
    """Rebuild the model of a validated tcaudit/scan/v1 document."""
    namespaces = []
    for ns in doc["namespaces"]:
        netns = Netns(
            id=ns["id"],
            dev=0,
            names=tuple(ns["names"]),
            pids=tuple(ns["pids"]),
            label=ns["label"],
            path="",
            is_self=ns.get("self", False),
            container_id=ns.get("container_id"),
            pod=ns.get("pod"),
            pod_uid=ns.get("pod_uid"),
        )
        interfaces = tuple(
            Interface(
                name=i["name"],
                ifindex=i["ifindex"],
                kind=i["kind"],
                hooks=tuple(_hook(h) for h in i["hooks"]),
            )
            for i in ns["interfaces"]
        )
        namespaces.append(NamespaceScan(netns, interfaces))
    host = doc["host"]
    return Scan(
        host=Host(hostname=host["hostname"], kernel=host["kernel"], tcx=host["tcx"]),
        namespaces=tuple(namespaces),
        warnings=tuple(doc.get("warnings", ())),
        partial=doc.get("partial", False) is True,
    )
