"""Vendor fingerprints and attribution, on hand-built entries (no root needed).

One case per row of shared/reference/vendors.md (and datadog-cws.md), shaped as the kernel
would show that vendor's filter; plus position-only matches, user registry files and their
errors, add_vendors over a whole scan, and the JSON form.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest

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
    VendorMatch,
    Verdict,
)
from tcaudit.output.json_format import VENDOR_SCHEMA, vendor_json
from tcaudit.vendors import registry as vendors
from tcaudit.vendors.attribution import add_vendors, attribute
from tcaudit.vendors.cws import is_cws
from tcaudit.vendors.registry import load_registry, registry_schema

HOST = Netns(1, 4, (), (1,), "host", "/proc/1/ns/net", is_self=True)
POD = Netns(2, 4, (), (900,), "pid 900 (pause)", "/proc/900/ns/net")


def program(
    name: str | None = None,
    maps: tuple[str, ...] = (),
    holders: tuple[tuple[str, int], ...] = (),
) -> Program:
    return Program(
        id=42,
        name=name,
        tag="0123456789abcdef",
        type="sched_cls",
        insns=10,
        maps=tuple(MapRef(i + 1, m, "hash") for i, m in enumerate(maps)),
        holders=tuple(Holder(pid, comm) for comm, pid in holders),
        btf_id=None,
        loaded_at=None,
        uid=0,
    )


def entry(
    *,
    pref: int | None = 1,
    handle: int | None = 1,
    filter_name: str | None = None,
    prog: Program | None = None,
    kind: str = "bpf",
    possible: tuple[int, ...] | None = None,
) -> Entry:
    verdict = None if possible is None else Verdict(possible, ("continue",), "static", None)
    if kind == "tcx":
        pref = handle = None
    return Entry(
        pref=pref,
        handle=handle,
        chain=None if kind == "tcx" else 0,
        protocol=None if kind == "tcx" else "all",
        kind=kind,
        direct_action=None if kind == "tcx" else True,
        filter_name=filter_name,
        program=prog if prog is not None else program(),
        verdict=verdict,
    )


def who(
    e: Entry,
    iface: str = "lxc12ab",
    hook: str = "clsact/ingress",
    netns: Netns = HOST,
    registry: tuple[vendors.Fingerprint, ...] | None = None,
) -> VendorMatch | None:
    h = Hook(hook, True, (e,))
    i = Interface(iface, 7, "veth", (h,))
    return attribute(e, i, h, netns, load_registry() if registry is None else registry)


@dataclass(frozen=True)
class Case:
    row: str
    entry: Entry
    iface: str
    hook: str
    netns: Netns
    vendor: str
    version: str | None
    confidence: str
    fingerprint: str  # the (merged) fingerprint id
    evidence: tuple[str, ...]  # each must be among the evidence strings


CASES = [
    Case(
        "Cilium 1.9-1.12",
        entry(
            filter_name="bpf_lxc.o:[from-container]",
            prog=program(
                None, ("cilium_calls_01234", "cilium_ct4_glob"), (("cilium-agent", 1201),)
            ),
            possible=(0, 2),
        ),
        "lxc12ab", "clsact/ingress", HOST, "Cilium", "1.9-1.12", "high", "cilium-1.9",
        (
            'filter name "bpf_lxc.o:[from-container]" matches Cilium 1.9-1.12',
            'map "cilium_calls_01234" matches Cilium 1.9-1.12',
            "held by cilium-agent[1201] (unverified pattern)",
            "pref 1 is Cilium 1.9-1.12's default",
            "handle 0x1 is Cilium 1.9-1.12's default",
            "can return TC_ACT_OK (0), as Cilium 1.9-1.12 does",
        ),
    ),
    Case(
        "Cilium 1.13 / 1.14-1.15 / 1.16+ on tc",
        entry(filter_name="cil_from_container-lxc12ab", prog=program("cil_from_contai")),
        "lxc12ab", "clsact/ingress", HOST, "Cilium", "1.13+", "high",
        "cilium-1.13,cilium-1.14,cilium-1.16-tc",
        (
            'filter name "cil_from_container-lxc12ab" matches Cilium 1.13+',
            'program name "cil_from_contai" matches Cilium 1.13+',
        ),
    ),
    Case(
        "Cilium 1.16+ TCX",
        entry(kind="tcx", prog=program("cil_from_contai", ("cilium_calls_hostns",)), possible=(0,)),
        "lxc12ab", "tcx/ingress", HOST, "Cilium", "1.16+", "high", "cilium-1.16-tcx",
        (
            'program name "cil_from_contai" matches Cilium 1.16+',
            "on tcx/ingress, where Cilium 1.16+ attaches",
            "can return TCX_PASS (0), as Cilium 1.16+ does",
        ),
    ),
    Case(
        "Calico eBPF 3.13-3.20",
        entry(
            pref=49152,
            filter_name="from_wep_info.o:[calico_from_workload_ep]",
            possible=(-1, 2, 7),
        ),
        "cali1234abcd", "clsact/ingress", HOST, "Calico", "3.13-3.20", "medium", "calico-3.13",
        (
            'filter name "from_wep_info.o:[calico_from_workload_ep]" matches Calico 3.13-3.20',
            "pref 49152 looks kernel-picked, as Calico 3.13-3.20's is",
            "interface cali1234abcd fits Calico 3.13-3.20",
        ),
    ),
    Case(
        "Calico 3.21-3.26",
        entry(pref=49152, filter_name="calico_from_wor:[88]", prog=program("calico_from_wor")),
        "cali1234abcd", "clsact/egress", HOST, "Calico", "3.21-3.26", "high", "calico-3.21",
        ('program name "calico_from_wor" matches Calico 3.21-3.26',),
    ),
    Case(
        "Calico 3.27+",
        entry(
            pref=49151,
            filter_name="cali_tc_preambl:[91]",
            prog=program("cali_tc_preambl", ("cali_jump2",), (("calico-node", 300),)),
        ),
        "cali1234abcd", "clsact/ingress", HOST, "Calico", "3.27+", "high", "calico-3.27",
        (
            'map "cali_jump2" matches Calico 3.27+',
            "held by calico-node[300] (unverified pattern)",
        ),
    ),
    Case(
        "Calico 3.31+ TCX",
        entry(kind="tcx", prog=program("cali_tc_preambl")),
        "cali1234abcd", "tcx/egress", HOST, "Calico", "3.31+", "medium", "calico-3.31-tcx",
        ('program name "cali_tc_preambl" matches Calico 3.31+',),
    ),
    Case(
        "AWS network policy agent",
        entry(
            filter_name="handle_ingress",
            prog=program("", ("aws_conntrack_m", "policy_events")),
            possible=(0, 2),
        ),
        "eni0a1b2c3d4e5", "clsact/egress", HOST, "AWS network policy agent", "1.0.1-1.4.x",
        "high", "aws-network-policy-agent",
        (
            'filter name "handle_ingress" matches AWS network policy agent 1.0.1-1.4.x',
            'map "aws_conntrack_m" matches AWS network policy agent 1.0.1-1.4.x',
        ),
    ),
    Case(
        "Microsoft Retina < 0.0.8",
        entry(filter_name="endpoint_ingres", prog=program("endpoint_ingres"), possible=(0,)),
        "azv1a2b3c", "clsact/ingress", HOST, "Microsoft Retina", "<0.0.8", "high",
        "retina-0.0.7",
        ("can return TC_ACT_OK (0), as Microsoft Retina <0.0.8 does",),
    ),
    Case(
        "Retina 0.0.8+",
        entry(filter_name="host_egress_fil", prog=program("host_egress_fil"), possible=(-1,)),
        "eth0", "clsact/egress", HOST, "Microsoft Retina", "0.0.8+", "high", "retina-0.0.8",
        ("can return TC_ACT_UNSPEC (-1), as Microsoft Retina 0.0.8+ does",),
    ),
    Case(
        "Retina 1.2.0+ TCX",
        entry(kind="tcx", prog=program("endpoint_egress"), possible=(-1,)),
        "azv1a2b3c", "tcx/egress", HOST, "Microsoft Retina", "1.2.0+", "medium",
        "retina-1.2-tcx",
        ('program name "endpoint_egress" matches Microsoft Retina 1.2.0+',),
    ),
    Case(
        "Inspektor Gadget",
        entry(handle=3, prog=program("ig_net_disp", (), (("gadgettracerman", 55),))),
        "veth9f8e7d", "clsact/ingress", HOST, "Inspektor Gadget", "0.25+", "high",
        "inspektor-gadget",
        ('program name "ig_net_disp" matches Inspektor Gadget 0.25+',),
    ),
    Case(
        "Aqua Tracee",
        entry(pref=49152, filter_name="tc_ingress:[17]", prog=program("tc_ingress")),
        "eth0", "clsact/ingress", HOST, "Aqua Tracee", "0.6-0.10", "high", "tracee",
        ('filter name "tc_ingress:[17]" matches Aqua Tracee 0.6-0.10 (unverified pattern)',),
    ),
    Case(
        "Istio ambient",
        entry(prog=program("ztunnel_ingress"), possible=(0, 7)),
        "eth0", "clsact/ingress", POD, "Istio ambient", "1.18-1.20", "medium",
        "istio-ambient-ebpf",
        ('program name "ztunnel_ingress" matches Istio ambient 1.18-1.20',),
    ),
    Case(
        "Elastic host isolation",
        entry(pref=49152, prog=program("tc_filter"), possible=(-1, 2)),
        "ens5", "clsact/egress", HOST, "Elastic Endpoint (host isolation)", "2021+", "medium",
        "elastic-host-isolation",
        ('program name "tc_filter" matches Elastic Endpoint (host isolation) 2021+',),
    ),
    Case(
        "Grafana Beyla",
        entry(kind="tcx", prog=program("beyla_tc_egress", (), (("beyla", 77),))),
        "eth0", "tcx/egress", HOST, "Grafana Beyla", "2025+", "medium", "grafana-beyla",
        (
            "held by beyla[77] (unverified pattern)",
            "Grafana Beyla 2025+ fingerprint is unverified",
        ),
    ),
    Case(
        "Datadog CWS 7.39.2+",
        entry(
            pref=10,
            handle=0x2,
            filter_name="classifier_ingress_security380_4026531992_2115",
            prog=program("classifier_ingr", (), (("system-probe", 2115),)),
            possible=(-1,),
        ),
        "lxc12ab", "clsact/ingress", HOST, "Datadog CWS", "7.39.2+", "high", "datadog-cws",
        (
            'filter name "classifier_ingress_security380_4026531992_2115" matches '
            "Datadog CWS 7.39.2+",
            'program name "classifier_ingr" matches Datadog CWS 7.39.2+',
            "held by system-probe[2115]",
            "pref 10 is Datadog CWS 7.39.2+'s default",
            "filter name carries the pid of its holder system-probe[2115]",
        ),
    ),
    Case(
        "Datadog CWS 7.36.0-7.39.1 (hard-coded pref 1)",
        entry(
            filter_name="classifier_egress_security12_4026532100_880",
            prog=program("classifier_egre"),
        ),
        "eth0", "clsact/egress", POD, "Datadog CWS", "7.36.0-7.39.1", "high",
        "datadog-cws-7.36",
        ("filter name carries pid 880 (system-probe's pid when it attached)",),
    ),
    Case(
        "GitHub Azure runner images",
        entry(prog=program("tc_egress_traff")),
        "eth0", "clsact/egress", HOST, "GitHub Azure runner images", None, "medium",
        "github-azure-runner",
        (
            'program name "tc_egress_traff" matches GitHub Azure runner images',
            "interface eth0 fits GitHub Azure runner images",
            "GitHub Azure runner images fingerprint is unverified",
        ),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.row for c in CASES])
def test_every_vendor_row(case: Case) -> None:
    match = who(case.entry, case.iface, case.hook, case.netns)
    assert match is not None
    assert (match.name, match.version_hint, match.confidence) == (
        case.vendor,
        case.version,
        case.confidence,
    )
    assert match.fingerprint.id == case.fingerprint
    for text in case.evidence:
        assert text in match.evidence, (text, match.evidence)
    assert is_cws(match) == (case.vendor == "Datadog CWS")
    assert who(case.entry, case.iface, case.hook, case.netns) == match  # deterministic


def test_every_shipped_fingerprint_is_exercised() -> None:
    covered = {fid for case in CASES for fid in case.fingerprint.split(",")}
    assert covered == {fp.id for fp in load_registry()}


def test_shipped_registry_facts() -> None:
    by_id = {fp.id: fp for fp in load_registry()}
    assert by_id["cilium-1.9"].knob == "--bpf-filter-priority=N"
    assert "backported to 1.10" in (by_id["cilium-1.9"].knob_note or "")
    assert by_id["cilium-1.16-tcx"].habits == ("removes-legacy-filters-after-tcx",)
    aws = by_id["aws-network-policy-agent"]
    assert (aws.knob, aws.default_pref, aws.default_handle, aws.pref_fixed) == (None, 1, 1, True)
    assert aws.habits == ("deletes-handle-1-filters",)
    cws = by_id["datadog-cws"]
    assert (cws.default_pref, cws.default_handle, cws.accept_verdict) == (10, None, "TC_ACT_UNSPEC")
    assert cws.knob == "event_monitoring_config.network.classifier_priority"
    assert by_id["calico-3.13"].default_pref is None  # kernel picks
    assert by_id["grafana-beyla"].certainty == "unverified"
    for fp in load_registry():
        assert fp.sources, fp.id
        assert set(fp.habits) <= set(vendors.HABITS)
        assert fp.matchers.netns in ("host", "pod", "any")


def test_merged_fingerprint_unites_habits_and_keeps_knob() -> None:
    match = who(entry(filter_name="cil_to_container-lxc1", prog=program("cil_to_containe")))
    assert match is not None
    assert match.fingerprint.habits == ("replaces-filters", "removes-legacy-filters-after-tcx")
    assert match.fingerprint.knob == "--bpf-filter-priority=N"


def test_one_strong_matcher_is_medium() -> None:
    match = who(entry(filter_name="bpf_host.o:[from-netdev]"), iface="eth0")
    assert match is not None
    assert (match.name, match.version_hint, match.confidence) == ("Cilium", "1.9-1.12", "medium")
    assert "interface eth0 fits Cilium 1.9-1.12" not in match.evidence


def test_retina_version_follows_the_verdict() -> None:
    def retina(possible: tuple[int, ...] | None) -> VendorMatch | None:
        e = entry(filter_name="endpoint_ingres", prog=program("endpoint_ingres"), possible=possible)
        return who(e, iface="eth0")

    ok, unspec, unknown = retina((0,)), retina((-1,)), retina(None)
    assert ok is not None and unspec is not None and unknown is not None
    assert (ok.version_hint, ok.fingerprint.habits) == ("<0.0.8", ("deletes-clsact-qdisc",))
    assert (unspec.version_hint, unspec.fingerprint.habits) == ("0.0.8+", ())
    assert "never returns TC_ACT_OK (0), unlike Microsoft Retina <0.0.8" not in unspec.evidence
    # unknown verdict: both fit, the range covers every version, the habits are kept
    assert unknown.version_hint is None
    assert unknown.fingerprint.id == "retina-0.0.7,retina-0.0.8"
    assert unknown.fingerprint.habits == ("deletes-clsact-qdisc",)


def test_cws_at_a_configured_priority_is_current_cws() -> None:
    e = entry(
        pref=5,
        handle=0x10,
        filter_name="classifier_raw_packet_egress_security9_4026531992_2115",
        prog=program("classifier_raw_", (), (("system-probe", 2115),)),
    )
    match = who(e, iface="eth0", hook="clsact/egress", netns=POD)
    assert match is not None and is_cws(match)
    assert (match.version_hint, match.confidence) == ("7.39.2+", "high")
    assert match.fingerprint.habits == ()


def test_aws_filter_name_at_another_pref_is_not_aws() -> None:
    assert who(entry(pref=5, filter_name="handle_ingress"), iface="eni1") is None


def test_position_only_is_low_and_spans_versions() -> None:
    match = who(entry(prog=program(None)), iface="lxc12ab")
    assert match is not None
    assert (match.name, match.confidence, match.version_hint) == ("Cilium", "low", "1.9+")
    assert match.evidence == (
        "interface lxc12ab fits Cilium 1.9+",
        "on clsact/ingress, where Cilium 1.9+ attaches",
        "in the host namespace, where Cilium 1.9+ attaches",
        "pref 1 is Cilium 1.9+'s default",
        "handle 0x1 is Cilium 1.9+'s default",
    )
    calico = who(entry(pref=49152, prog=program(None)), iface="cali99")
    assert calico is not None
    assert (calico.name, calico.confidence, calico.version_hint) == ("Calico", "low", "3.13+")


def test_position_only_names_narrow_the_versions() -> None:
    # Cilium 1.13+ names its programs cil_*; 1.9-1.12's kernel name is not known
    match = who(entry(prog=program("mytool_ingress")), iface="lxc12ab")
    assert match is not None
    assert (match.name, match.confidence, match.version_hint) == ("Cilium", "low", "1.9-1.12")


def test_position_only_tcx() -> None:
    match = who(entry(kind="tcx", prog=program(None)), iface="lxc1", hook="tcx/ingress")
    assert match is not None
    assert (match.name, match.confidence, match.version_hint) == ("Cilium", "low", "1.16+")
    assert match.fingerprint.attach == "tcx"


@pytest.mark.parametrize(
    ("e", "iface", "netns"),
    [
        (entry(filter_name="mytool", prog=program(None)), "lxc12ab", HOST),
        (entry(prog=program(None, ("my_map",))), "lxc12ab", HOST),  # maps contradict
        (entry(prog=program(None)), "lxc12ab", POD),  # wrong namespace kind
        (entry(prog=program(None)), "eth7", HOST),  # no interface pattern fits
        (entry(pref=2, prog=program(None)), "lxc12ab", HOST),  # not the default pref
        (entry(kind="u32", prog=None), "lxc12ab", HOST),  # not a BPF program
        (entry(prog=program(None), possible=(-1,)), "lxc12ab", HOST),  # Cilium returns OK
        (entry(prog=program(None)), "eth0", HOST),  # Retina/runner eth0: unverified position
    ],
)
def test_unknown_owner(e: Entry, iface: str, netns: Netns) -> None:
    assert who(e, iface=iface, netns=netns) is None


def test_tracee_and_azure_runner_names_do_not_collide() -> None:
    tracee = who(entry(pref=49152, prog=program("tc_egress")), "eth0", "clsact/egress")
    runner = who(entry(prog=program("tc_egress_traff")), "eth0", "clsact/egress")
    assert tracee is not None and runner is not None
    assert (tracee.name, runner.name) == ("Aqua Tracee", "GitHub Azure runner images")


def test_is_cws_none() -> None:
    assert is_cws(None) is False


# --- user registry files ------------------------------------------------------------------


def write(tmp_path: Path, doc: Any, name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


MYCNI = {
    "id": "mycni-2",
    "vendor": "MyCNI",
    "versions": "2.0+",
    "default_pref": 3,
    "accept_verdict": "TC_ACT_OK",
    "knob": "--tc-pref=N",
    "habits": ["replaces-filters"],
    "matchers": {"program_name": ["mycni_.*"], "holder_comm": ["mycnid"], "netns": "host"},
}


def test_user_file_adds_a_vendor(tmp_path: Path) -> None:
    path = write(tmp_path, {"schema": "tcaudit/vendors/v1", "fingerprints": [MYCNI]})
    registry = load_registry([path])
    assert len(registry) == len(load_registry()) + 1
    fp = registry[-1]
    assert (fp.id, fp.certainty, fp.attach) == ("mycni-2", "unverified", "clsact")
    assert fp.knob == "--tc-pref=N"
    e = entry(pref=3, prog=program("mycni_ingress", (), (("mycnid", 10),)))
    match = who(e, registry=registry)
    assert match is not None
    assert (match.name, match.version_hint, match.confidence) == ("MyCNI", "2.0+", "high")
    assert "MyCNI 2.0+ fingerprint is unverified" in match.evidence
    assert who(e) is None  # the shipped registry alone does not know it


def test_user_file_replaces_a_shipped_fingerprint(tmp_path: Path) -> None:
    mine = {**MYCNI, "id": "datadog-cws", "vendor": "Datadog CWS", "versions": "7.99+"}
    registry = load_registry([str(write(tmp_path, {"fingerprints": [mine]}))])
    assert len(registry) == len(load_registry())
    ids = [fp.id for fp in registry]
    assert ids == [fp.id for fp in load_registry()]
    assert registry[ids.index("datadog-cws")].versions == "7.99+"


BAD_FILES = [
    ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ([], "$: [] is not of type 'object'"),
    ({"fingerprints": [], "extra": 1}, "$: Additional properties are not allowed ('extra' was"),
    ({"schema": "tcaudit/vendors/v9", "fingerprints": []},
     "$.schema: 'tcaudit/vendors/v1' was expected"),
    ({"fingerprints": [{**MYCNI, "id": ""}]}, "$.fingerprints[0].id: '' is not a non-empty string"),
    ({"fingerprints": [{**MYCNI, "matchers": {"program_nmae": ["x"]}}]},
     "$.fingerprints[0].matchers: Additional properties are not allowed ('program_nmae' was"),
    ({"fingerprints": [{**MYCNI, "matchers": {"program_name": ["cil_(from"]}}]},
     "$.fingerprints[0].matchers.program_name[0]: bad regex 'cil_(from'"),
    ({"fingerprints": [{**MYCNI, "matchers": {"netns": "host"}}]},
     "$.fingerprints[0].matchers: needs at least one pattern"),
    ({"fingerprints": [{**MYCNI, "matchers": {"program_name": "x"}}]},
     "$.fingerprints[0].matchers.program_name: 'x' is not of type 'array'"),
    ({"fingerprints": [{**MYCNI, "matchers": {"program_name": ["x"], "hook": ["xdp"]}}]},
     "$.fingerprints[0].matchers.hook[0]: 'xdp' is not one of"),
    ({"fingerprints": [{**MYCNI, "habits": ["eats-packets"]}]},
     "$.fingerprints[0].habits[0]: 'eats-packets' is not one of"),
    ({"fingerprints": [{**MYCNI, "accept_verdict": "OK"}]},
     "$.fingerprints[0].accept_verdict: 'OK' is not one of ['TC_ACT_UNSPEC'"),
    ({"fingerprints": [{**MYCNI, "default_pref": 0}]},
     "$.fingerprints[0].default_pref: 0 is less than the minimum of 1"),
    ({"fingerprints": [{**MYCNI, "attach": "xdp"}]},
     "$.fingerprints[0].attach: 'xdp' is not one of ['clsact', 'tcx']"),
    ({"fingerprints": [{**MYCNI, "versions": "latest"}]},
     "$.fingerprints[0].versions: 'latest' is not a version range: 1.9-1.12, 1.16+"),
    ({"fingerprints": [MYCNI, MYCNI]}, "$.fingerprints[1].id: duplicate id 'mycni-2'"),
    ({"fingerprints": [{k: v for k, v in MYCNI.items() if k != "matchers"}]},
     "$.fingerprints[0]: 'matchers' is a required property"),
    ({"fingerprints": ["cilium"]}, "$.fingerprints[0]: 'cilium' is not of type 'object'"),
    ({"fingerprints": [{**MYCNI, "notes": ["x" * 500, 1]}]},
     "$.fingerprints[0].notes[1]: 1 is not of type 'string'"),
    ({"fingerprints": [{**MYCNI, "knob": ["line one\nline two"] * 40}]},
     "$.fingerprints[0].knob: "),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "message"), BAD_FILES)
def test_malformed_user_file(tmp_path: Path, doc: Any, message: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(UsageError) as info:
        load_registry([path])
    text = str(info.value)
    assert text.startswith(f"--vendors {path}: ")
    assert message in text
    assert "\n" not in text
    assert info.value.exit_code == 2


def test_unreadable_user_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(UsageError, match=r"^--vendors .*nope\.json: cannot read: No such file"):
        load_registry([missing])


def test_shipped_registry_passes_the_schema() -> None:
    """The run time trusts vendors.json (no jsonschema import on the scan path): this is
    where it is checked, with the same schema and post-checks a --vendors file gets."""
    from importlib import resources

    from jsonschema import Draft202012Validator

    text = resources.files("tcaudit.vendors").joinpath("vendors.json").read_text("utf-8")
    doc = json.loads(text)
    errors = [f"{e.json_path}: {e.message}"
              for e in Draft202012Validator(registry_schema()).iter_errors(doc)]
    assert errors == []
    assert vendors.parse_registry(text, "checked against source") == vendors.shipped_registry()


def test_scan_path_never_imports_jsonschema() -> None:
    """jsonschema's import costs ~130 ms: only a --vendors file may pay it."""
    code = ("import sys; from tcaudit.vendors.registry import load_registry; "
            "from tcaudit.vendors.attribution import add_vendors; import tcaudit.pipeline; "
            "assert load_registry(); print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# --- whole scans and JSON -----------------------------------------------------------------


def test_add_vendors_sets_every_entry() -> None:
    assert "vendor" in {f.name for f in fields(Entry)}
    cilium = entry(filter_name="cil_from_container-lxc12ab", prog=program("cil_from_contai"))
    cws = entry(
        pref=10,
        handle=2,
        filter_name="classifier_ingress_security380_4026531992_2115",
        prog=program("classifier_ingr"),
    )
    stranger = entry(pref=20, prog=program("something"))
    host_if = Interface("lxc12ab", 7, "veth", (Hook("clsact/ingress", True, (cws, cilium)),))
    pod_if = Interface("eth0", 2, "veth", (Hook("clsact/egress", True, (stranger,)),))
    scan = Scan(
        Host("node", "6.8.0", True),
        (NamespaceScan(HOST, (host_if,)), NamespaceScan(POD, (pod_if,))),
    )
    done = add_vendors(scan)
    first, second = done.namespaces[0].interfaces[0].hooks[0].entries
    assert first.vendor is not None and is_cws(first.vendor)
    assert second.vendor is not None and second.vendor.name == "Cilium"
    assert done.namespaces[1].interfaces[0].hooks[0].entries[0].vendor is None
    assert add_vendors(scan, ()) == scan  # an empty registry knows nobody


def test_vendor_json_matches_schema() -> None:
    assert vendor_json(None) is None
    for case in CASES:
        match = who(case.entry, case.iface, case.hook, case.netns)
        doc = vendor_json(match)
        assert doc is not None
        jsonschema.validate(doc, VENDOR_SCHEMA)
        assert doc["name"] == case.vendor
        assert doc["confidence"] == case.confidence
        assert isinstance(doc["evidence"], list) and doc["evidence"]
    aws = who(CASES[7].entry, CASES[7].iface, CASES[7].hook)
    doc = vendor_json(aws)
    assert doc is not None
    assert (doc["knob"], doc["habits"], doc["default_handle"]) == (
        None,
        ["deletes-handle-1-filters"],
        "0x1",
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "confidence": "certain"}, VENDOR_SCHEMA)
