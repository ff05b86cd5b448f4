"""Two writers racing on one hook, as in the seed document's Cilium <= 1.9 x Datadog
Agent 7.36-7.39.1 bug: run as separate processes so each has its own netlink socket.

  python -m tests.race_writers agent NETNS_PATH DEV    attach pref 1 handle 1; when the
                                                       filter changes, delete "its" filter
  python -m tests.race_writers cilium NETNS_PATH DEV   wait for it, then replace pref 1
                                                       handle 1 with another program
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tcaudit import bpfsys
from tcaudit.labkit import returning
from tcaudit.netlink import PARENT_INGRESS, Netlink


def main(role: str, netns_path: str, dev: str) -> int:
    Path("/proc/self/comm").write_text("system-probe" if role == "agent" else "cilium-agent")
    fd = bpfsys.open_netns(netns_path)
    nl = Netlink(fd)
    index = nl.ifindex(dev)
    assert index is not None
    name = "classifier_ingr" if role == "agent" else "cil_from_contai"
    prog = bpfsys.prog_load(returning(-1 if role == "agent" else 0), name=name)
    mine = bpfsys.prog_info(prog).id
    deadline = time.monotonic() + 20
    if role == "agent":
        nl.add_bpf_filter(
            index,
            PARENT_INGRESS,
            pref=1,
            handle=1,
            prog_fd=prog,
            name=f"classifier_ingress_security1_4026531992_{__import__('os').getpid()}",
        )
        while time.monotonic() < deadline:
            current = [f for f in nl.filters(index, PARENT_INGRESS) if f.pref == 1]
            if current and current[0].bpf and current[0].bpf.prog_id != mine:
                # 7.36-7.39.1: "my filter is gone", so it deletes pref 1 handle 1 on stop
                nl.delete_filter(index, PARENT_INGRESS, pref=1, handle=1, protocol=3, kind="bpf")
                break
            time.sleep(0.02)
    else:
        while time.monotonic() < deadline:
            if any(f.pref == 1 for f in nl.filters(index, PARENT_INGRESS)):
                break
            time.sleep(0.02)
        nl.add_bpf_filter(
            index,
            PARENT_INGRESS,
            pref=1,
            handle=1,
            prog_fd=prog,
            name=f"cil_from_container-{dev}",
            replace=True,
        )
    time.sleep(1.5)  # stay alive so the watcher can name us
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
