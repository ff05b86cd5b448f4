"""The recommendation on real hooks: every branch of the seed's rule and each extension.

Each test builds a small node (host namespace + pods behind veths) with vendor-shaped
classifiers and a CWS stand-in, then asks `tcaudit recommend/check --format json`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tcaudit.kernel.rtnl import ETH_P_IP
from tcaudit.lab.sandbox import Sandbox
from tests.conftest import validate
from tests.nodes import node, run_json

pytestmark = pytest.mark.usefixtures("privileged")

CILIUM_13 = "cil_from_container-{dev}"


def recommend(capsys: pytest.CaptureFixture[str], n: Any, *extra: str) -> dict[str, Any]:
    code, doc = run_json(capsys, "recommend", "--format", "json", *n.selectors(), *extra)
    assert code == 0
    validate(doc)
    return doc


def test_no_vendor_keeps_the_detected_priority(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("keep", 10)
    assert doc["priority_source"] == "detected" and doc["cws_detected"] is True
    assert doc["blind"] == [] and doc["hooks"] == 14  # 4 veths + 3 lo, 2 directions
    assert [f["kind"] for f in doc["findings"]] == []


def test_vendor_returning_unspec_at_pref_1_is_harmless(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(
        -1, pref=1, filter_name="calico_from_workload_ep", prog_name="calico_from_wor"
    )
    n.vendor_on_host_veths(
        -1,
        pref=49152,
        filter_name="calico_from_wor:[7]",
        prog_name="calico_from_wor",
        direction="egress",
    )
    doc = recommend(capsys, n)
    assert doc["action"] == "keep" and doc["blind"] == []


def test_pref_1_vendor_returning_ok_forces_disable(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=1, filter_name=CILIUM_13, prog_name="cil_from_contai")
    doc = recommend(capsys, n)
    assert doc["action"] == "disable-network" and doc["classifier_priority"] is None
    blind = doc["blind"]
    assert len(blind) == 2 and {b["interface"] for b in blind} == {"lxc0", "lxc1"}
    assert all(b["vendor"] == "Cilium" and b["pref"] == 1 and not b["fixable"] for b in blind)
    kinds = {a["kind"]: a for a in doc["alternatives"]}
    assert kinds["move-vendor"]["setting"] == "--bpf-filter-priority=11"
    assert kinds["accept-blind-spots"]["remaining_blind"] == 2
    assert "enabled: false" in doc["snippets"]["system_probe_yaml"]
    assert "DD_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED=false" in doc["snippets"]["env"]
    assert "DD_EVENT_MONITORING_CONFIG_NETWORK_ENABLED=false" in doc["snippets"]["env"]
    host_summary = next(s for s in doc["namespaces"] if s["netns"] == n.host.name)
    assert (host_summary["blind"], host_summary["unfixable"]) == (2, 2)
    assert all(s["blind"] == 0 for s in doc["namespaces"] if s["netns"] != n.host.name)


def test_pref_2_to_10_vendor_gets_a_lower_priority(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=5, filter_name="vendor_pref5", prog_name="vendor_ok")
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 4)
    assert "classifier_priority: 4" in doc["snippets"]["system_probe_yaml"]
    assert 'value: "4"' in doc["snippets"]["helm_values"]
    assert "DD_RUNTIME_SECURITY_CONFIG_NETWORK_CLASSIFIER_PRIORITY=4" in doc["snippets"]["env"]
    # and at 4 the node is clean
    assert recommend(capsys, n, "--priority", "4")["action"] == "keep"


def test_pref_11_and_up_is_harmless(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=11, filter_name="vendor_pref11", prog_name="vendor_ok")
    assert recommend(capsys, n)["action"] == "keep"


def test_tcx_pass_is_blind_at_every_priority(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    n.box.tcx_attach(n.host, "lxc0", "ingress", n.prog(0, "cil_from_contai"))
    n.box.tcx_attach(n.pods[1], "eth0", "egress", n.prog(1, "tcx_other"))  # 1: NEXT for tc
    doc = recommend(capsys, n)
    assert doc["action"] == "disable-network"
    [spot] = doc["blind"]
    assert (spot["interface"], spot["hook"], spot["culprit_hook"], spot["pref"]) == (
        "lxc0",
        "clsact/ingress",
        "tcx/ingress",
        None,
    )
    assert "runs before every clsact filter" in spot["reason"]


def test_same_pref_filter_added_after_cws_runs_first(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=10, handle=7, filter_name="late_vendor", prog_name="late")
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 9)
    [spot] = doc["blind"]
    assert spot["pref"] == 10 and spot["certain"] is True


def test_pref_collision_is_skipped(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=5, filter_name="vendor_pref5", prog_name="vendor_ok")
    # a harmless bpf filter for IPv4 only holds pref 4 on one hook: CWS (protocol all)
    # could not attach at 4 there, so 4 is skipped
    box.attach(n.pods[0], "eth0", "egress", n.prog(-1, "ipv4_only"), pref=4, handle=1,
               protocol=ETH_P_IP, name="ipv4_only")
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 3)
    code, check = run_json(capsys, "check", "--format", "json", "--priority", "4",
                           "--fail-on", "warning", *n.selectors())
    assert code == 1
    assert "pref-collision" in {f["kind"] for f in check["findings"]}


def test_u32_filter_ahead_ends_the_chain_when_it_matches(
        box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    n = node(box, pods=1)
    n.cws(10)
    # without actions a match accepts (TC_ACT_OK); with actions, the actions decide
    subprocess.run(["tc", "-n", n.host.name, "filter", "add", "dev", "lxc0", "ingress", "pref",
                    "6", "protocol", "all", "u32", "match", "u32", "0", "0", "classid", "1:1"],
                   check=True)
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 5)
    [spot] = doc["blind"]
    assert spot["pref"] == 6 and spot["certain"] is True and spot["vendor"] is None


def test_unknown_verdict_may_hide(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    n = node(box, pods=1)
    n.cws(10)
    # r0 = skb->len (a context load): the analysis cannot bound it
    unknown = box.load_raw(bytes.fromhex("61100000000000009500000000000000"), "from_ctx")
    box.attach(n.host, "lxc0", "ingress", unknown, pref=3, handle=1, name="opaque")
    doc = recommend(capsys, n)
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 2)
    [spot] = doc["blind"]
    assert spot["certain"] is False and "unknown" in spot["reason"]
    assert {f["level"] for f in doc["findings"] if f["kind"] == "unknown-verdict"} == {"warning"}
    code, _ = run_json(capsys, "check", "--format", "json", *n.selectors())
    assert code == 0  # not blind for sure...
    code, _ = run_json(capsys, "check", "--format", "json", "--fail-on", "warning", *n.selectors())
    assert code == 1  # ...but a warning


def test_cws_at_a_non_default_priority_is_detected(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(20)
    n.vendor_on_host_veths(0, pref=15, filter_name="vendor_pref15", prog_name="vendor_ok")
    doc = recommend(capsys, n)
    assert (doc["current_priority"], doc["priority_source"]) == (20, "detected")
    assert (doc["action"], doc["classifier_priority"]) == ("set-priority", 14)
    configured = recommend(capsys, n, "--priority", "10")
    assert configured["action"] == "keep" and configured["priority_source"] == "configured"


def test_drop_only_ahead_is_a_warning_not_blindness(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box, pods=1)
    n.cws(10)
    n.vendor_on_host_veths(2, pref=2, filter_name="isolation", prog_name="tc_filter")
    doc = recommend(capsys, n)
    assert doc["action"] == "keep"
    # tc_filter returning SHOT is Elastic's host isolation, which deletes clsact on release
    assert [f["kind"] for f in doc["findings"]] == ["drop-only", "destructive-vendor"]
    assert doc["findings"][1]["vendor"].startswith("Elastic")
    assert run_json(capsys, "check", "--format", "json", *n.selectors())[0] == 0
    assert (
        run_json(capsys, "check", "--format", "json", "--fail-on", "warning", *n.selectors())[0]
        == 1
    )
    assert (
        run_json(capsys, "check", "--format", "json", "--fail-on", "never", *n.selectors())[0] == 0
    )


def test_missing_cws_filters_and_destructive_vendors_are_warnings(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    n = node(box)
    n.cws(10)
    n.box.detach(next(f for f in n.box.filters if f.dev == "eth0" and f.ns is n.pods[0]))
    # Retina < 0.0.8 (returns OK at pref 1) deletes the clsact qdisc on cleanup
    n.vendor_on_host_veths(0, pref=1, filter_name="endpoint_ingres", prog_name="endpoint_ingres")
    doc = recommend(capsys, n)
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"cws-missing", "destructive-vendor"} <= kinds


def test_snapshot_diff_and_merge(
    box: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    n = node(box)
    n.cws(10)
    n.vendor_on_host_veths(0, pref=11, filter_name="vendor_pref11", prog_name="vendor_ok")
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    assert run_json(capsys, "snapshot", "-o", "-", *n.selectors())[1]["schema"] == (
        "tcaudit/scan/v1"
    )
    from tcaudit.cli.main import main

    assert main(["snapshot", "-o", str(before), *n.selectors()]) == 0
    n.box.tcx_attach(n.host, "lxc1", "ingress", n.prog(0, "cil_from_contai"))
    assert main(["snapshot", "-o", str(after), *n.selectors()]) == 0
    capsys.readouterr()

    code, doc = run_json(capsys, "diff", str(before), str(after), "--format", "json")
    validate(doc)
    assert code == 1 and doc["failed"] is True
    kinds = [c["kind"] for c in doc["changes"]]
    assert kinds[0] == "newly-blind" and "tcx-appeared" in kinds
    assert run_json(capsys, "diff", str(before), str(before), "--format", "json")[0] == 0

    code, merged = run_json(capsys, "merge", str(before), str(after), "--format", "json")
    validate(merged)
    assert merged["action"] == "disable-network"
    assert merged["best_without_them"] == 10
    assert [node["action"] for node in merged["nodes"]] == ["keep", "disable-network"]
    assert merged["forcing_disable"] == [merged["nodes"][1]["node"]]
