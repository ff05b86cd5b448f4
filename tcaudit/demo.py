"""`make demo`: build a small node in namespaces, show what tcaudit sees, remove it all.

A "host" namespace with two pods joined by veth pairs, shaped like a Cilium 1.9 node with
the Datadog agent: on each host-side veth a Cilium-like classifier at pref 1 / handle 1
that accepts (TC_ACT_OK) and a CWS-like one at pref 10 that hands packets on, plus a TCX
program on one pod. Nothing outside the demo's own namespaces is touched.
"""

from __future__ import annotations

import sys

import click

from tcaudit import labkit, privileges
from tcaudit.cli import main as cli_main
from tcaudit.errors import TcauditError
from tcaudit.labkit import Sandbox


def build(box: Sandbox) -> list[str]:
    host = box.namespace("host")
    cilium = box.load_returning(0, "cil_from_contai")
    cws = box.load_returning(-1, "classifier_ingr")
    for i in range(2):
        pod = box.namespace(f"pod{i}")
        dev = f"lxc{i}"
        box.veth(host, dev, pod, "eth0")
        box.clsact(host, dev)
        box.clsact(pod, "eth0")
        box.attach(
            host, dev, "ingress", cilium, pref=1, handle=1, name="bpf_lxc.o:[from-container]"
        )
        box.attach(
            host,
            dev,
            "ingress",
            cws,
            pref=10,
            handle=2,
            name=f"classifier_ingress_security{i}_4026531992_2115",
        )
        box.attach(
            pod,
            "eth0",
            "egress",
            cws,
            pref=10,
            handle=1,
            name=f"classifier_egress_security{i}_4026531992_2115",
        )
    box.tcx_attach(box.namespaces[-1], "eth0", "ingress", box.load_returning(0, "tcx_pass"))
    return [ns.name for ns in box.namespaces]


def main() -> int:
    try:
        privileges.require("demo")
    except TcauditError as err:
        click.echo(f"tcaudit: error: {err}", err=True)
        return err.exit_code
    with labkit.sandbox("tcatdemo") as box:
        names = build(box)
        selectors = [arg for name in names for arg in ("--netns", name)]
        click.secho("\n$ tcaudit scan " + " ".join(selectors), bold=True)
        click.echo(
            "A Cilium-like filter at pref 1 accepts every packet (TC_ACT_OK), so the\n"
            "CWS-like filter at pref 10 behind it never sees one; on pod1 a TCX program\n"
            "runs before every clsact filter.\n"
        )
        code = cli_main(["scan", *selectors])
    click.echo("\ndemo namespaces removed; on a real node run: sudo tcaudit scan")
    return code


if __name__ == "__main__":
    sys.exit(main())
