"""The check on documents real tcaudit runs wrote (keep, set-priority, disable-network),
with Datadog's aggregator stub, as Datadog's own integrations are tested."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from datadog_checks.base import AgentCheck
from datadog_checks.base.stubs.aggregator import AggregatorStub
from datadog_checks.tcaudit import TcauditCheck

SC = "tcaudit.cws_network_visibility"


def fresh(src: Path, tmp: Path) -> Path:
    """A copy stamped now (the documents were written a while ago)."""
    doc = json.loads(src.read_text())
    doc["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    out = tmp / src.name
    out.write_text(json.dumps(doc))
    return out


def run(path: Path, aggregator: AggregatorStub, **options: object) -> TcauditCheck:
    check = TcauditCheck("tcaudit", {}, [{"status_path": str(path), **options}])
    check.check(None)
    return check


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("keep.json", AgentCheck.OK, ""),
        ("set-priority.json", AgentCheck.WARNING, "set classifier_priority "),
        ("disable-network.json", AgentCheck.CRITICAL, ""),
    ],
)
def test_each_action_is_its_service_check_status(
    aggregator: AggregatorStub, docs: Path, tmp_path: Path, name: str, status: int, words: str
) -> None:
    path = fresh(docs / name, tmp_path)
    doc = json.loads(path.read_text())
    run(path, aggregator)
    [sc] = aggregator.service_checks(SC)
    assert sc.status == status
    assert (sc.message or "").startswith(words) and bool(sc.message) == (status != AgentCheck.OK)
    blind = {(b["netns"], b["interface"], b["hook"]) for b in doc["blind"]}
    aggregator.assert_metric("tcaudit.cws.blind_hooks", value=len(blind))
    aggregator.assert_metric("tcaudit.cws.hooks", value=doc["hooks"])
    expected = doc["classifier_priority"] or doc["current_priority"]
    aggregator.assert_metric("tcaudit.cws.classifier_priority", value=expected)
    for item in doc["classifiers"]:
        aggregator.assert_metric(
            "tcaudit.tc.classifiers",
            value=item["count"],
            tags=[f"vendor:{item['vendor']}", f"hook:{item['hook']}",
                  f"effective:{item['effective']}"],
        )
    if name == "disable-network.json":
        assert len(blind) >= 1


@pytest.mark.parametrize("how", ["missing", "not-json", "other-schema", "stale", "mtime"])
def test_an_unusable_document_is_unknown_with_a_clear_message(
    aggregator: AggregatorStub, docs: Path, tmp_path: Path, how: str
) -> None:
    path = tmp_path / "recommend.json"
    if how == "not-json":
        path.write_text("{not json")
    elif how == "other-schema":
        path.write_text(json.dumps({"schema": "tcaudit/scan/v1"}))
    elif how == "stale":
        doc = json.loads((docs / "keep.json").read_text())
        doc["generated_at"] = "2020-01-01T00:00:00.000Z"
        path.write_text(json.dumps(doc))
    elif how == "mtime":
        doc = json.loads((docs / "keep.json").read_text())
        doc.pop("generated_at")
        path.write_text(json.dumps(doc))
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    run(path, aggregator)
    [sc] = aggregator.service_checks(SC)
    assert sc.status == AgentCheck.UNKNOWN
    text = {
        "missing": "cannot read", "not-json": "is not JSON", "other-schema": "is not a",
        "stale": "old (max_age_seconds 900)", "mtime": "old (max_age_seconds 900)",
    }[how]
    assert text in sc.message and "Traceback" not in sc.message
    assert not aggregator.metrics("tcaudit.cws.hooks")


def test_a_change_of_action_is_an_event(
    aggregator: AggregatorStub, docs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "recommend.json"
    shutil.copy(fresh(docs / "keep.json", tmp_path), path)
    check = TcauditCheck("tcaudit", {}, [{"status_path": str(path)}])
    check.check(None)
    assert aggregator.events == []
    shutil.copy(fresh(docs / "disable-network.json", tmp_path), path)
    check.check(None)
    [event] = aggregator.events
    assert event["msg_title"] == "tcaudit: CWS network visibility keep -> disable-network"
    assert event["alert_type"] == "error"
    check.check(None)
    assert len(aggregator.events) == 1  # no change, no new event
