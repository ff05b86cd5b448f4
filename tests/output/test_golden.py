"""Golden outputs for every format, from hand-built (deterministic) nodes.

Regenerate after an intended change with TCAUDIT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tcaudit.advice.recommend import recommend
from tcaudit.cli.main import main
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
from tcaudit.output.interface import formatter
from tcaudit.output.json_format import check_json, dumps, recommend_json, scan_json
from tcaudit.vendors.attribution import add_vendors
from tests.conftest import validate

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TCAUDIT_UPDATE_GOLDEN") == "1"
if UPDATE and os.environ.get("CI"):
    # regenerating makes every golden test pass: never where the result is the verdict
    raise pytest.UsageError("TCAUDIT_UPDATE_GOLDEN=1 is refused when CI is set")


def program(pid: int, name: str, maps: tuple[str, ...] = (), holder: str | None = None
            ) -> Program:
    return Program(
        id=pid, name=name, tag=f"{pid:016x}", type="sched_cls", insns=40,
        maps=tuple(MapRef(pid * 10 + i, m, "prog_array") for i, m in enumerate(maps)),
        holders=(Holder(1000 + pid, holder),) if holder else (),
        btf_id=None, loaded_at="2026-11-27T03:00:00Z", uid=0)


def verdict(*values: int, effective: tuple[str, ...]) -> Verdict:
    vals = tuple(sorted(values))
    ranges: list[tuple[int, int]] = []
    for v in vals:
        if ranges and v == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], v)
        else:
            ranges.append((v, v))
    return Verdict(vals, effective, "static", None, tuple(ranges))


def cws(pid: int, direction: str, pref: int = 10) -> Entry:
    name = "classifier_ingr" if direction == "ingress" else "classifier_egre"
    return Entry(pref=pref, handle=1, chain=0, protocol="all", kind="bpf", direct_action=True,
                 filter_name=f"classifier_{direction}_security3_4026531992_2115",
                 program=program(pid, name, holder="system-probe"),
                 verdict=verdict(-1, effective=("continue",)))


def node(hostname: str, vendor_pref: int, *, tcx: bool = False) -> Scan:
    cilium = Entry(pref=vendor_pref, handle=1, chain=0, protocol="all", kind="bpf",
                   direct_action=True, filter_name="cil_from_container-lxc1",
                   program=program(7, "cil_from_contai", ("cilium_calls_00",), "cilium-agent"),
                   verdict=verdict(0, 2, 7, effective=("accept", "drop", "redirect")))
    ingress = sorted((cilium, cws(21, "ingress")), key=lambda e: e.pref or 0)  # run order
    host_hooks = [
        Hook("clsact/ingress", True, tuple(ingress), qdisc="clsact"),
        Hook("clsact/egress", True, (cws(22, "egress"),), qdisc="clsact"),
    ]
    if tcx:
        pass_all = Entry(pref=None, handle=None, chain=None, protocol=None, kind="tcx",
                         direct_action=None, filter_name=None,
                         program=program(9, "cil_from_contai", ("cilium_calls_00",)),
                         link_id=4, verdict=verdict(0, effective=("accept",)))
        host_hooks.insert(0, Hook("tcx/ingress", True, (pass_all,), revision=3, link_ids=(4,)))
    pod_hooks = (
        Hook("clsact/ingress", True, (cws(21, "ingress"),), qdisc="clsact"),
        Hook("clsact/egress", True, (cws(22, "egress"),), qdisc="clsact"),
    )
    scan = Scan(
        host=Host(hostname=hostname, kernel="6.18.0", tcx=True),
        namespaces=(
            NamespaceScan(
                Netns(id=4026531840, dev=4, names=(), pids=(1,), label="self", path="",
                      is_self=True),
                (Interface("lxc1", 5, "veth", tuple(host_hooks)),),
            ),
            NamespaceScan(
                Netns(id=4026532300, dev=4, names=(), pids=(4242,),
                      label="pid 4242 (pause) pod web-0", path="", pod="web-0"),
                (Interface("eth0", 2, "veth", pod_hooks),),
            ),
        ),
    )
    return add_vendors(scan)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {name}: run with TCAUDIT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


def as_json(doc: dict[str, Any]) -> str:
    validate(doc)
    if "generated_at" in doc:
        doc = {**doc, "generated_at": "2026-11-27T03:00:00.000Z"}  # the one moving part
    return dumps(doc, pretty=True)


@pytest.mark.parametrize(("hostname", "pref", "tcx"), [
    ("node-keep", 20, False), ("node-set", 5, False), ("node-disable", 1, False),
    ("node-tcx", 20, True),
])
def test_recommend_and_check_formats(hostname: str, pref: int, tcx: bool) -> None:
    scan = node(hostname, pref, tcx=tcx)
    rec = recommend(scan)
    table, json_ = formatter("table"), formatter("json", pretty=True)
    check_golden(f"{hostname}.scan.txt", table.scan(scan))
    check_golden(f"{hostname}.scan.json", as_json(scan_json(scan)))
    assert json_.scan(scan) == as_json(scan_json(scan))
    check_golden(f"{hostname}.recommend.txt", table.recommend(rec))
    check_golden(f"{hostname}.recommend.json", as_json(recommend_json(rec)))
    check_golden(f"{hostname}.check.txt", table.check(rec, "blind"))
    check_golden(f"{hostname}.check.json", as_json(check_json(rec, "warning")))
    assert as_json(json.loads(json_.check(rec, "warning"))) == as_json(check_json(rec, "warning"))
    check_golden(f"{hostname}.check.junit.xml", formatter("junit").check(rec, "blind"))
    check_golden(f"{hostname}.check.md", formatter("markdown").check(rec, "blind"))


def test_the_golden_answers_are_the_seed_rule() -> None:
    """The golden files must say what the seed document says, not just what we print."""
    assert recommend(node("a", 20)).action == "keep"
    set_priority = recommend(node("b", 5))
    assert (set_priority.action, set_priority.classifier_priority) == ("set-priority", 4)
    assert recommend(node("c", 1)).action == "disable-network"
    assert recommend(node("d", 20, tcx=True)).action == "disable-network"


def test_diff_and_merge_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {}
    for hostname, pref, tcx in (("node-keep", 20, False), ("node-set", 5, False),
                                ("node-tcx", 20, True)):
        path = tmp_path / f"{hostname}.json"
        path.write_text(dumps(scan_json(node(hostname, pref, tcx=tcx))))
        files[hostname] = str(path)

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr().out.replace(str(tmp_path) + "/", "")
        return code, out

    code, text = run("diff", files["node-keep"], files["node-tcx"])
    assert code == 1
    check_golden("diff.txt", text)
    code, text = run("diff", files["node-keep"], files["node-tcx"], "--format", "json")
    validate(json.loads(text))
    check_golden("diff.json", text)
    code, text = run("merge", files["node-keep"], files["node-set"])
    assert code == 0
    check_golden("merge-set.txt", text)
    code, text = run("merge", files["node-keep"], files["node-set"], files["node-tcx"],
                     "--format", "json")
    validate(json.loads(text))
    check_golden("merge-disable.json", text)
    merged = json.loads(text)
    assert merged["action"] == "disable-network" and merged["forcing_disable"] == ["node-tcx"]
    assert merged["best_without_them"] == 4


def test_malformed_or_foreign_json_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(dumps(scan_json(node("n", 20))))
    cases = {
        "broken.json": "{not json",
        "foreign.json": json.dumps({"schema": "someone/else/v1"}),
        "list.json": "[1, 2]",
        "invalid.json": json.dumps({"schema": "tcaudit/scan/v1", "host": {}, "namespaces": []}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        for args in (["diff", str(good), str(tmp_path / name)],
                     ["merge", str(tmp_path / name)]):
            code = main(args)
            out, err = capsys.readouterr()
            assert code == 2, (name, err)
            assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["diff", str(good), str(tmp_path / "missing.json")]) == 2


def test_regenerating_golden_files_is_refused_in_ci(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "CI": "1", "TCAUDIT_UPDATE_GOLDEN": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "TCAUDIT_UPDATE_GOLDEN=1 is refused when CI is set" in done.stdout + done.stderr
