"""Renderers: model -> JSON documents and human tables. They return strings; only the CLI
writes them. JSON key names are the public contract documented in docs/json.md.
"""

from __future__ import annotations

import json
from typing import Any

from tcaudit import __version__
from tcaudit.model import Entry, Hook, Interface, Netns, Program, Scan

SCAN_SCHEMA = "tcaudit/scan/v1"


def handle_text(handle: int | None) -> str | None:
    return None if handle is None else f"0x{handle:x}"


def netns_json(ns: Netns) -> dict[str, Any]:
    return {
        "id": ns.id,
        "names": list(ns.names),
        "pids": list(ns.pids),
        "label": ns.label,
        "self": ns.is_self,
        "container_id": ns.container_id,
        "pod": ns.pod,
        "pod_uid": ns.pod_uid,
    }


def program_json(program: Program | None) -> dict[str, Any] | None:
    if program is None:
        return None
    return {
        "id": program.id,
        "name": program.name,
        "tag": program.tag,
        "type": program.type,
        "insns": program.insns,
        "maps": [{"id": m.id, "name": m.name, "type": m.type} for m in program.maps],
        "holders": [{"pid": h.pid, "comm": h.comm} for h in program.holders],
        "btf_id": program.btf_id,
        "loaded_at": program.loaded_at,
        "uid": program.uid,
        "error": program.error,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "pref": entry.pref,
        "handle": handle_text(entry.handle),
        "chain": entry.chain,
        "protocol": entry.protocol,
        "kind": entry.kind,
        "direct_action": entry.direct_action,
        "filter_name": entry.filter_name,
        "has_actions": entry.has_actions,
        "classid": handle_text(entry.classid),
        "link_id": entry.link_id,
        "cbpf_insns": entry.cbpf_insns,
        "reachable": entry.reachable,
        "program": program_json(entry.program),
    }


def hook_json(hook: Hook) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hook": hook.hook,
        "supported": hook.supported,
        "entries": [entry_json(e) for e in hook.entries],
    }
    if hook.hook.startswith("tcx/"):
        doc["revision"] = hook.revision
        doc["link_ids"] = list(hook.link_ids)
    else:
        doc["qdisc"] = hook.qdisc
        doc["block"] = hook.block
        doc["block_devices"] = list(hook.block_devices)
    if hook.note:
        doc["note"] = hook.note
    return doc


def interface_json(interface: Interface) -> dict[str, Any]:
    return {
        "name": interface.name,
        "ifindex": interface.ifindex,
        "kind": interface.kind,
        "hooks": [hook_json(h) for h in interface.hooks],
    }


def scan_json(scan: Scan) -> dict[str, Any]:
    return {
        "schema": SCAN_SCHEMA,
        "tcaudit_version": __version__,
        "host": {"hostname": scan.host.hostname, "kernel": scan.host.kernel, "tcx": scan.host.tcx},
        "namespaces": [
            {**netns_json(ns.netns), "interfaces": [interface_json(i) for i in ns.interfaces]}
            for ns in scan.namespaces
        ],
        "warnings": list(scan.warnings),
    }


def dumps(doc: dict[str, Any], *, pretty: bool = True) -> str:
    """JSON text; compact for pipes (the C encoder: indenting costs 10x at 500 hooks)."""
    if pretty:
        return json.dumps(doc, indent=2) + "\n"
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _program_text(entry: Entry) -> str:
    if entry.kind == "cbpf":
        return f"classic BPF, {entry.cbpf_insns} insns"
    program = entry.program
    if program is None:
        return "-" if entry.kind not in ("bpf", "tcx") else "? (no program id)"
    if program.error:
        return f"id {program.id}: {program.error}"
    return f"{program.id} {program.name or '(no name)'}"


def _holders_text(entry: Entry) -> str:
    if entry.program is None or not entry.program.holders:
        return ""
    return ", ".join(f"{h.comm}[{h.pid}]" for h in entry.program.holders[:3]) + (
        " …" if len(entry.program.holders) > 3 else ""
    )


def scan_table(scan: Scan, *, show_all: bool = False) -> str:
    """A table per namespace; interfaces with nothing on their hooks hidden unless show_all."""
    from tabulate import tabulate  # only tables need it (saves ~20 ms on JSON runs)

    blocks: list[str] = []
    hidden = 0
    for ns in scan.namespaces:
        rows = []
        for interface in ns.interfaces:
            if not show_all and interface.entry_count == 0:
                hidden += 1
                continue
            first = True
            for hook in interface.hooks:
                if not hook.entries:
                    if show_all:
                        state = "empty" if hook.supported else (hook.note or "unsupported")
                        rows.append(
                            [interface.name if first else "", hook.hook, "", "", state, "", "", ""]
                        )
                        first = False
                    continue
                for entry in hook.entries:
                    flags = []
                    if entry.direct_action:
                        flags.append("da")
                    if entry.has_actions:
                        flags.append("actions")
                    if not entry.reachable:
                        flags.append(f"chain {entry.chain}: unreachable")
                    if hook.block:
                        flags.append(f"block {hook.block}")
                    rows.append(
                        [
                            interface.name if first else "",
                            hook.hook,
                            "" if entry.pref is None else str(entry.pref),
                            handle_text(entry.handle)
                            or (f"link {entry.link_id}" if entry.link_id else "attach"),
                            entry.kind + (" " + ",".join(flags) if flags else ""),
                            entry.filter_name or "",
                            _program_text(entry),
                            _holders_text(entry),
                        ]
                    )
                    first = False
        if not rows:
            continue
        header = f"netns {ns.netns.label} [inode {ns.netns.id}]"
        table = tabulate(
            rows,
            headers=[
                "interface",
                "hook",
                "pref",
                "handle",
                "kind",
                "filter name",
                "program",
                "held by",
            ],
            tablefmt="simple",
        )
        blocks.append(f"{header}\n{table}")
    if not blocks:
        blocks.append("no classifiers on any selected tc hook")
    summary = (
        f"{len(scan.namespaces)} namespaces, "
        f"{sum(len(ns.interfaces) for ns in scan.namespaces)} interfaces, "
        f"{sum(i.entry_count for ns in scan.namespaces for i in ns.interfaces)} entries"
    )
    if not scan.host.tcx:
        summary += "; kernel has no TCX (tcx hooks not available)"
    if hidden:
        summary += f"; {hidden} interfaces without classifiers hidden (--all shows them)"
    return "\n\n".join(blocks) + "\n\n" + summary + "\n"
