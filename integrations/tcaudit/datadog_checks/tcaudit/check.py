"""The tcaudit Agent check: reads the answer a privileged tcaudit wrote, never tcaudit.

`tcaudit recommend --format json -o /var/lib/tcaudit/recommend.json` (a systemd timer
or a DaemonSet runs it as root) writes a ``tcaudit/recommend/v1`` document; this check,
running unprivileged inside the Agent, turns it into:

- the service check ``tcaudit.cws_network_visibility``: OK for ``keep``, WARNING for
  ``set-priority`` (the value in the message), CRITICAL for ``disable-network``,
  UNKNOWN when the document is missing, unreadable, of another schema or older than
  ``max_age_seconds`` (its ``generated_at``, else the file's mtime);
- gauges ``tcaudit.cws.blind_hooks`` (distinct namespace/interface/hook triples),
  ``tcaudit.cws.hooks``, ``tcaudit.cws.classifier_priority`` and
  ``tcaudit.tc.classifiers`` (tagged by vendor, hook and effective verdict);
- an event when the action changes between runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime
from typing import Any

from datadog_checks.base import AgentCheck

SCHEMA = "tcaudit/recommend/v1"
DEFAULT_PATH = "/var/lib/tcaudit/recommend.json"
MAX_BYTES = 8 << 20
STATUS = {"keep": AgentCheck.OK, "set-priority": AgentCheck.WARNING,
          "disable-network": AgentCheck.CRITICAL}


class TcauditCheck(AgentCheck):
    __NAMESPACE__ = "tcaudit"
    SERVICE_CHECK = "cws_network_visibility"

    def __init__(self, name: str, init_config: Any, instances: Any) -> None:
        super().__init__(name, init_config, instances)
        self.status_path = str(self.instance.get("status_path", DEFAULT_PATH))
        self.max_age = float(self.instance.get("max_age_seconds", 900))
        self.tags = list(self.instance.get("tags", []))
        self._last_action: str | None = None

    def _document(self) -> tuple[dict[str, Any] | None, str]:
        """(document, "") or (None, why it cannot be used)."""
        try:
            with open(self.status_path, "rb") as handle:
                mtime = os.fstat(handle.fileno()).st_mtime
                raw = handle.read(MAX_BYTES + 1)
        except OSError as err:
            return None, f"cannot read {self.status_path}: {err.strerror}"
        if len(raw) > MAX_BYTES:
            return None, f"{self.status_path} is larger than {MAX_BYTES} bytes"
        try:
            doc = json.loads(raw)
        except ValueError:
            return None, f"{self.status_path} is not JSON"
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            return None, f"{self.status_path} is not a {SCHEMA} document"
        made = mtime
        stamp = doc.get("generated_at")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):  # else the file's mtime
                made = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        age = time.time() - made
        if age > self.max_age:
            return None, (
                f"{self.status_path} is {age:.0f} s old (max_age_seconds {self.max_age:.0f}): "
                "is the tcaudit timer or DaemonSet running?"
            )
        if doc.get("action") not in STATUS:
            return None, f"{self.status_path} has no action tcaudit knows"
        return doc, ""

    def check(self, _: Any) -> None:
        doc, problem = self._document()
        if doc is None:
            self.service_check(self.SERVICE_CHECK, self.UNKNOWN, tags=self.tags, message=problem)
            return
        action = str(doc["action"])
        summary = str(doc.get("summary", ""))
        if action == "set-priority":
            message = f"set classifier_priority {doc.get('classifier_priority')}: {summary}"
        else:
            message = summary
        # the Agent's convention: an OK service check carries no message
        shown = message if STATUS[action] != self.OK else None
        self.service_check(self.SERVICE_CHECK, STATUS[action], tags=self.tags, message=shown)
        blind = {
            (b.get("netns"), b.get("interface"), b.get("hook"))
            for b in doc.get("blind", [])
            if isinstance(b, dict)
        }
        self.gauge("cws.blind_hooks", len(blind), tags=self.tags)
        self.gauge("cws.hooks", int(doc.get("hooks", 0)), tags=self.tags)
        priority = doc.get("classifier_priority")
        if priority is None:
            priority = doc.get("current_priority")
        if isinstance(priority, int):
            self.gauge("cws.classifier_priority", priority, tags=self.tags)
        for item in doc.get("classifiers", []):
            if isinstance(item, dict) and isinstance(item.get("count"), int):
                tags = [
                    *self.tags,
                    f"vendor:{item.get('vendor', 'unknown')}",
                    f"hook:{item.get('hook', 'unknown')}",
                    f"effective:{item.get('effective', 'unknown')}",
                ]
                self.gauge("tc.classifiers", item["count"], tags=tags)
        if self._last_action is not None and action != self._last_action:
            self.event(
                {
                    "timestamp": int(time.time()),
                    "event_type": "tcaudit.action_changed",
                    "msg_title": f"tcaudit: CWS network visibility {self._last_action} -> {action}",
                    "msg_text": message,
                    "alert_type": {"keep": "success", "set-priority": "warning"}.get(
                        action, "error"
                    ),
                    "source_type_name": "tcaudit",
                    "tags": self.tags,
                }
            )
        self._last_action = action
