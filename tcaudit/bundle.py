"""`tcaudit bundle`: the tc evidence support needs, in one archive, reviewed first.

Like the agent's flare, it lists what it will write and asks before writing. It holds
what the flare lacks: the inventory with verdicts and vendors, the recommendation, an
`explain` of every foreign program, the raw netlink view per hook (gathered by tcaudit,
the equivalent of `tc -d -j filter show`), TCX queries, kernel version and config, the
CWS settings detected on the node, and tcaudit's own version and command line.

Never included: map contents, packet data, environment variables. Interface addresses
only with --include-addresses.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import platform
import re
import tarfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcaudit import __version__
from tcaudit.advice.explain import explain
from tcaudit.advice.recommend import recommend
from tcaudit.errors import UsageError
from tcaudit.inventory.namespaces import discover, select
from tcaudit.inventory.scan import Selection
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import PARENT_EGRESS, PARENT_INGRESS, TC_H_CLSACT, TCX_ATTACH
from tcaudit.kernel.rtnl import Netlink
from tcaudit.model import Scan
from tcaudit.output.json_format import dumps, explain_json, recommend_json, scan_json
from tcaudit.output.layout import WIDE
from tcaudit.output.text import explain_text
from tcaudit.output.text_recommend import recommend_text
from tcaudit.pipeline import inventory
from tcaudit.vendors.cws import detect_priority, trusted

CONFIG_KEYS = (
    "CONFIG_BPF", "CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_NET_XGRESS",
    "CONFIG_NET_CLS_BPF", "CONFIG_NET_CLS_ACT", "CONFIG_NET_SCH_INGRESS",
    "CONFIG_NET_ACT_BPF", "CONFIG_NET_CLS_U32", "CONFIG_NET_CLS_MATCHALL",
    "CONFIG_NET_CLS_FLOWER", "CONFIG_NET_ACT_GACT", "CONFIG_NET_ACT_MIRRED",
    "CONFIG_NETKIT", "CONFIG_DEBUG_INFO_BTF", "CONFIG_IKHEADERS", "CONFIG_SECURITY_LOCKDOWN_LSM",
)  # fmt: skip
_CWS_PID = re.compile(r"^classifier_\w+_(\d+)$")

README = """tcaudit support bundle
======================

Made by `tcaudit bundle` (see tcaudit.json for the version and the command). It holds
the tc evidence about this node that the Datadog agent's flare does not. It never holds
map contents, packet data or environment variables; interface addresses only when the
bundle was made with --include-addresses (addresses.json).

MANIFEST.json          every file with its size and sha256
tcaudit.json           tcaudit's version, the command line, when, the host
scan.json              the inventory (schema tcaudit/scan/v1): every tc hook (TCX and
                       clsact) of every selected namespace in run order, each entry with
                       its program, verdict (from the bytecode) and vendor
recommend.json / .txt  the recommendation (schema tcaudit/recommend/v1): keep,
                       set-priority N or disable-network, with the blind hooks and the
                       settings to paste
explain/PROG_ID.json   `tcaudit explain` of every program that is not CWS's own: the
explain/PROG_ID.txt    possible return values, tail-call targets, where it is attached,
                       and a summary; the disassembly (which can hold addresses as
                       immediates) only with --include-addresses
netlink.json           the raw netlink view gathered by tcaudit: per namespace, its links,
                       qdiscs, and for every clsact hook each filter's attributes (the
                       equivalent of `tc -d -j filter show`)
tcx.json               BPF_PROG_QUERY per interface and direction: program ids in run
                       order, link ids, mprog revision
kernel.txt             uname, and the kernel config lines that matter for tc and BPF
cws.json               what tcaudit found of Datadog CWS on this node: the priority and
                       handles in effect, system-probe's pid, which hooks carry it
addresses.json         (only with --include-addresses) IPv4 addresses per interface
"""


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]

    def listing(self) -> list[tuple[str, int]]:
        return [(name, len(data)) for name, data in self.files.items()]


def _kernel_config() -> tuple[str, list[str]]:
    release = platform.release()
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()
        wanted = []
        for key in CONFIG_KEYS:
            found = re.search(rf"^(# )?{key}[= ].*$", text, re.MULTILINE)
            wanted.append(found.group(0) if found else f"# {key} not in the config")
        return str(path), wanted
    return "", [f"# no kernel config found (/proc/config.gz, /boot/config-{release})"]


def _netlink_view(
    selection: Selection, include_addresses: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(netlink view, TCX queries, addresses) for the selected namespaces."""
    view: dict[str, Any] = {}
    tcx: dict[str, Any] = {}
    addresses: dict[str, Any] = {}
    for ns in select(discover(), selection.netns):
        key = f"{ns.label} [{ns.id}]"
        try:
            fd = nsfs.open_netns(ns.path)
        except OSError:
            continue
        try:
            with Netlink(fd) as nl:
                links = nl.links(stats=False)
                qdiscs = nl.qdiscs()
                hooked = {q.ifindex for q in qdiscs if q.parent == TC_H_CLSACT}
                names = {link.ifindex: link.name for link in links}
                filters = {}
                for ifindex in sorted(hooked):
                    for parent, hook in ((PARENT_INGRESS, "ingress"), (PARENT_EGRESS, "egress")):
                        filters[f"{names.get(ifindex, ifindex)} {hook}"] = [
                            _jsonable(dataclasses.asdict(f)) for f in nl.filters(ifindex, parent)
                        ]
                view[key] = {
                    "links": [
                        {
                            "ifindex": link.ifindex,
                            "name": link.name,
                            "kind": link.kind,
                            "up": link.up,
                        }
                        for link in links
                    ],
                    "qdiscs": [_jsonable(dataclasses.asdict(q)) for q in qdiscs],
                    "filters": filters,
                }
                if include_addresses:
                    addresses[key] = [
                        {"interface": names.get(i, str(i)), "address": a, "prefixlen": p}
                        for i, a, p in nl.addresses()
                    ]
            with nsfs.inside_netns(fd):
                for link in links:
                    for hook, attach in TCX_ATTACH.items():
                        try:
                            query = bpf.tcx_query(link.ifindex, attach)
                        except bpf.TcxUnsupported:
                            tcx[key] = "the kernel has no TCX"
                            break
                        except OSError as err:
                            tcx.setdefault(key, {})[f"{link.name} {hook}"] = err.strerror
                            continue
                        tcx.setdefault(key, {})[f"{link.name} {hook}"] = {
                            "prog_ids": list(query.prog_ids),
                            "link_ids": list(query.link_ids),
                            "revision": query.revision,
                        }
                    if isinstance(tcx.get(key), str):
                        break
        finally:
            os.close(fd)
    return view, tcx, addresses


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _cws(scan: Scan) -> dict[str, Any]:
    prefs: Counter[int] = Counter()
    handles: Counter[str] = Counter()
    pids: Counter[int] = Counter()
    hooks: list[str] = []
    raw_packet = False
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            for hook in interface.hooks:
                for entry in hook.entries:
                    if not trusted(entry):
                        continue
                    hooks.append(f"{ns.netns.label} {interface.name} {hook.hook}")
                    if entry.pref is not None:
                        prefs[entry.pref] += 1
                    if entry.handle is not None:
                        handles[f"0x{entry.handle:x}"] += 1
                    found = _CWS_PID.match(entry.filter_name or "")
                    if found:
                        pids[int(found.group(1))] += 1
                    raw_packet |= "raw_packet" in (entry.filter_name or "")
    detected, count = detect_priority(scan)
    return {
        "detected": bool(count),
        "classifier_priority": detected,
        "priorities_seen": dict(prefs),
        "handles_seen": dict(handles),
        "system_probe_pids": sorted(pids),
        "raw_packet_filters": raw_packet,
        "hooks": hooks,
        "settings": {
            "event_monitoring_config.network.classifier_priority": detected,
            "runtime_security_config.network.classifier_priority": detected,
            "note": "as seen on the hooks; system-probe.yaml itself is not read",
        },
    }


def collect(
    selection: Selection,
    *,
    vendor_files: Sequence[str] = (),
    include_addresses: bool = False,
    argv: Sequence[str] = (),
) -> Bundle:
    """Everything the bundle holds, in memory (a node's worth is a few MB at most)."""
    scan = inventory(selection, vendor_files=vendor_files)
    from tcaudit.inventory.cws_agents import running_agents

    rec = recommend(scan, agents=running_agents())  # only the six network keys: no secrets
    files: dict[str, bytes] = {}

    def add(name: str, text: str) -> None:
        files[name] = text.encode()

    add("README.txt", README)
    add(
        "tcaudit.json",
        dumps(
            {
                "tcaudit_version": __version__,
                "command": ["tcaudit", *argv],
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": {"hostname": scan.host.hostname, "kernel": scan.host.kernel},
            }
        ),
    )
    add("scan.json", dumps(scan_json(scan)))
    add("recommend.json", dumps(recommend_json(rec)))
    add("recommend.txt", recommend_text(rec, layout=WIDE))
    foreign = sorted(
        {
            e.program.id
            for ns in scan.namespaces
            for i in ns.interfaces
            for h in i.hooks
            for e in h.entries
            if e.program is not None and e.program.error is None and not trusted(e)
        }
    )
    for prog_id in foreign:
        try:
            explanation = explain(prog_id, scan)
        except UsageError:
            continue  # unloaded since the scan
        # the disassembly can carry addresses (Cilium compiles endpoint IPs in)
        add(f"explain/{prog_id}.json", dumps(explain_json(explanation, code=include_addresses)))
        add(f"explain/{prog_id}.txt", explain_text(explanation, code=include_addresses))
    view, tcx, addresses = _netlink_view(selection, include_addresses)
    add("netlink.json", dumps(view))
    add("tcx.json", dumps(tcx))
    source, lines = _kernel_config()
    uname = os.uname()
    add(
        "kernel.txt",
        "\n".join(
            [
                f"{uname.sysname} {uname.release} {uname.version} {uname.machine}",
                f"config: {source or 'not found'}",
                *lines,
                "",
            ]
        ),
    )
    add("cws.json", dumps(_cws(scan)))
    if include_addresses:
        add("addresses.json", dumps(addresses))
    manifest = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    files["MANIFEST.json"] = dumps({"files": manifest}).encode()
    return Bundle(files)


def write(bundle: Bundle, output: str) -> None:
    """A gzipped tar, written to a temporary name and renamed: never half a bundle."""
    target = Path(output)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        # 0600 from the first byte: the bundle describes the node's security setup
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            stamp = int(time.time())
            for name, data in bundle.files.items():
                info = tarfile.TarInfo(f"tcaudit-bundle/{name}")
                info.size = len(data)
                info.mtime = stamp
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(target)
    except OSError as err:
        raise UsageError(f"-o {output}: cannot write it: {err.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removed on Ctrl-C too
