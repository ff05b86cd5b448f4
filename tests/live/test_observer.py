"""The observer loaded from bytecode counts exactly what bpf/verdict_probe.c, compiled by
bcc, counts on the same traffic; it needs neither bcc nor kernel headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tcaudit.kernel.abi import CLSACT_PARENT
from tcaudit.kernel.rtnl import ETH_P_ALL
from tcaudit.lab.sandbox import Sandbox
from tcaudit.live.observer import CompiledObserver, Observer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("privileged")


def test_the_bytecode_counts_what_the_c_program_counts(box: Sandbox) -> None:
    host = box.namespace("host")
    pod = box.namespace("pod")
    pair = box.veth(host, "veth0", pod, "eth0")
    box.clsact(host, "veth0")
    ingress = CLSACT_PARENT["clsact/ingress"]
    with Observer() as ours, CompiledObserver() as reference:
        # both at free prefs on the same hook, each with its own slot as classid; a
        # third slot nobody counts must not disturb either
        for pref, slot, fd in ((3, 5, ours.fd), (4, 7, reference.fd), (6, 200, ours.fd)):
            host.nl.add_bpf_filter(
                host.ifindex("veth0"), ingress, pref=pref, handle=1, prog_fd=fd,
                name=f"obs{slot}", protocol=ETH_P_ALL, classid=slot,
            )
        box.send_udp(pod, pair.a_addr, count=25)
        subprocess.run(
            ["ip", "netns", "exec", pod.name, "ping", "-c", "3", "-i", "0.2", "-W", "1",
             "198.51.100.99"],
            capture_output=True, check=False,
        )  # ARP requests for an address nobody has
        mine, theirs = ours.counts(5), reference.counts(7)
    assert mine == theirs
    assert mine.ipv4 >= 25 and mine.arp >= 1 and mine.packets == (
        mine.ipv4 + mine.ipv6 + mine.arp + mine.other
    )
    assert mine.bytes > mine.packets * 40


def test_the_probe_needs_no_bcc(box: Sandbox) -> None:
    """bcc made unimportable: the probe still attaches, counts and cleans up."""
    from tests.nodes import node

    n = node(box, pods=1)
    n.vendor_on_host_veths(0, pref=3, filter_name="v", prog_name="v")
    code = (
        "import sys; sys.modules['bcc'] = None\n"
        "from tcaudit.cli.main import main\n"
        f"sys.exit(main(['probe', '--duration', '0.3s', *{n.selectors()!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "observed for" in done.stdout
