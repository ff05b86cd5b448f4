"""Renderers: model -> JSON documents and human tables. They return strings; only the CLI
writes them. JSON key names are the public contract documented in docs/json.md.
"""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

from tcaudit import __version__
from tcaudit.analysis.meaning import ranges_text, verdict_names
from tcaudit.model import Entry, Hook, Interface, Netns, Program, Scan, Verdict
from tcaudit.vendors.attribution import vendor_json

if TYPE_CHECKING:  # explain builds on inventory; `tcaudit scan` need not import it
    from tcaudit.advice.explain import Explanation, ProgramListing

SCAN_SCHEMA = "tcaudit/scan/v1"
EXPLAIN_SCHEMA = "tcaudit/explain/v1"


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


def verdict_json(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "possible": list(verdict.possible) if verdict.possible is not None else None,
        "ranges": [list(r) for r in verdict.ranges] if verdict.ranges is not None else None,
        "effective": list(verdict.effective) if verdict.effective is not None else None,
        "basis": verdict.basis,
        "reason": verdict.reason,
    }


def verdict_text(verdict: Verdict | None) -> str:
    """``accept|drop``, ``continue``, or ``?`` when unknown."""
    if verdict is None or verdict.effective is None:
        return "?"
    return "|".join(verdict.effective)


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
        "verdict": verdict_json(entry.verdict),
        "vendor": vendor_json(entry.vendor),
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


def _vendor_text(entry: Entry) -> str:
    match = entry.vendor
    if match is None:
        return "unknown"
    version = f" {match.version_hint}" if match.version_hint else ""
    return f"{match.name}{version} ({match.confidence})"


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
                        name = interface.name if first else ""
                        rows.append([name, hook.hook, "", "", state, "", "", "", "", ""])
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
                            verdict_text(entry.verdict),
                            _vendor_text(entry),
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
                "verdict",
                "vendor",
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
    if scan.host.tcx is False:
        summary += "; kernel has no TCX (tcx hooks not available)"
    if hidden:
        summary += f"; {hidden} interfaces without classifiers hidden (--all shows them)"
    return "\n\n".join(blocks) + "\n\n" + summary + "\n"


def _listing_json(listing: ProgramListing, code: bool = True) -> dict[str, Any]:
    return {
        "program": program_json(listing.program),
        "possible": list(listing.possible) if listing.possible is not None else None,
        "ranges": [list(r) for r in listing.ranges] if listing.ranges is not None else None,
        "names": verdict_names(frozenset(listing.possible)) if listing.possible else [],
        "reason": listing.reason,
        "subprograms": list(listing.subprograms),
        "tail_calls": [
            {
                "pc": t.pc,
                "map_id": t.map_id,
                "index": t.index,
                "indexes": list(t.indexes) if t.indexes is not None else None,
                "targets": list(t.targets),
            }
            for t in listing.tail_calls
        ],
        "disassembly": [
            {
                "pc": line.pc,
                "text": line.text,
                **(
                    {
                        "returns": list(line.returns) if line.returns is not None else None,
                        "ranges": [list(r) for r in line.ranges]
                        if line.ranges is not None
                        else None,
                    }
                    if line.is_exit
                    else {}
                ),
            }
            for line in (listing.lines if code else ())
        ],
    }


def explain_json(explanation: Explanation, *, code: bool = True) -> dict[str, Any]:
    """``code=False`` leaves the disassembly out (programs can carry addresses as
    immediates: the support bundle includes it only with --include-addresses)."""
    return {
        "schema": EXPLAIN_SCHEMA,
        "tcaudit_version": __version__,
        "program": _listing_json(explanation.root, code),
        "tail_call_targets": [_listing_json(t, code) for t in explanation.targets],
        "attachments": [
            {
                "netns": a.netns,
                "interface": a.interface,
                "hook": a.hook,
                "pref": a.pref,
                "handle": handle_text(a.handle),
                "mode": a.mode,
                "effective": list(a.effective) if a.effective is not None else None,
            }
            for a in explanation.attachments
        ],
        "summary": explanation.summary,
    }


def _listing_text(listing: ProgramListing, code: bool = True) -> list[str]:
    program = listing.program
    if listing.possible is not None:
        values = ", ".join(verdict_names(frozenset(listing.possible)))
    elif listing.ranges is not None:
        values = ranges_text(listing.ranges)
    else:
        values = f"unknown ({listing.reason})"
    out = [
        f"program {program.id} {program.name or '(no name)'}  type {program.type}  "
        f"tag {program.tag}  {program.insns} insns  loaded {program.loaded_at}",
        f"  returns: {values}",
    ]
    if listing.reason and listing.ranges is not None and listing.possible is not None:
        out.append(f"  depends on: {listing.reason}")
    if listing.subprograms:
        out.append("  subprograms start at: " + ", ".join(str(s) for s in listing.subprograms))
    for site in listing.tail_calls:
        if site.index is not None:
            index = f"slot {site.index}"
        elif site.indexes is not None:
            index = "slots " + ", ".join(str(i) for i in site.indexes)
        else:
            index = "any filled slot"
        targets = ", ".join(str(t) for t in site.targets) or "none (empty slot: falls through)"
        out.append(f"  tail call at {site.pc}: prog array {site.map_id} {index} -> {targets}")
    out.append("")
    if not code:
        out.append("  (disassembly left out: it can hold addresses as immediates)")
        return out
    for line in listing.lines:
        if line.function_start:
            out.append(f"  ; subprogram at {line.pc}")
        text = f"  {line.pc:5d}: {line.text}"
        if line.is_exit:
            if line.returns is not None:
                returns = ", ".join(verdict_names(frozenset(line.returns)))
            elif line.ranges is not None:
                returns = ranges_text(line.ranges)
            else:
                returns = "unknown"
            text = f"{text:<48} ; returns {returns}"
        out.append(text)
    return out


def explain_text(explanation: Explanation, *, code: bool = True) -> str:
    out = _listing_text(explanation.root, code)
    for target in explanation.targets:
        out += ["", f"--- tail-call target {target.program.id} ---", *_listing_text(target, code)]
    out += ["", "attached at:"]
    if not explanation.attachments:
        out.append("  (not on any selected tc hook)")
    for a in explanation.attachments:
        words = "|".join(a.effective) if a.effective is not None else "?"
        pref = f" pref {a.pref}" if a.pref is not None else ""
        out.append(f"  {a.netns} {a.interface} {a.hook}{pref} ({a.mode}): {words}")
    out += [
        "",
        "summary:",
        *textwrap.wrap(explanation.summary, 88, initial_indent="  ", subsequent_indent="  "),
    ]
    return "\n".join(out) + "\n"
