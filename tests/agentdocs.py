"""Real tcaudit runs on test namespaces that write the three documents the Agent check
is tested on (keep, set-priority, disable-network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tcaudit.lab.sandbox import Sandbox, leftover_namespaces
from tests.nodes import node

ROOT = Path(__file__).resolve().parent.parent


def write_documents(out: Path) -> None:
    """One node per action: a vendor at pref 20 (keep), at pref 5 (set 4), at pref 1;
    each in a sandbox of its own, removed before the next."""
    for name, pref in (("keep", 20), ("set-priority", 5), ("disable-network", 1)):
        with Sandbox() as box:
            n = node(box, pods=1)
            n.cws(10)
            n.vendor_on_host_veths(
                0, pref=pref, filter_name=f"vendor-{name}", prog_name="vendor_ok"
            )
            subprocess.run(
                [sys.executable, "-m", "tcaudit", "recommend", "--format", "json", "-o",
                 str(out / f"{name}.json"), *n.selectors()],
                cwd=ROOT, check=True, capture_output=True,
            )
        assert leftover_namespaces(box.tag) == []
