"""Node-shaped fixtures for recommendation tests: a host namespace with pods behind veth
pairs, vendor-shaped classifiers, and a CWS stand-in attached the way system-probe does
(pref = classifier_priority, every interface of every namespace, ingress and egress,
filter name classifier_<direction>_<uid>_<pid>, program names classifier_ingr/egre)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tcaudit.cli.main import main
from tcaudit.lab.sandbox import Namespace, Program, Sandbox

CWS_PID = 2115


@dataclass
class Node:
    box: Sandbox
    host: Namespace
    pods: list[Namespace] = field(default_factory=list)
    programs: dict[str, Program] = field(default_factory=dict)

    def prog(self, value: int, name: str) -> Program:
        key = f"{name}:{value}"
        if key not in self.programs:
            self.programs[key] = self.box.load_returning(value, name)
        return self.programs[key]

    def lxc(self, i: int) -> str:
        return f"lxc{i}"

    @property
    def namespaces(self) -> list[Namespace]:
        return [self.host, *self.pods]

    def interfaces(self) -> list[tuple[Namespace, str]]:
        out: list[tuple[Namespace, str]] = [(self.host, self.lxc(i)) for i in range(len(self.pods))]
        out += [(pod, "eth0") for pod in self.pods]
        return out

    def cws(self, pref: int = 10) -> None:
        """The CWS stand-in on every interface (lo too, creating clsact where it is
        missing, as system-probe does), both directions."""
        for ns in self.namespaces:
            self.box.clsact(ns, "lo")
        for ns, dev in [*self.interfaces(), *((ns, "lo") for ns in self.namespaces)]:
            for direction in ("ingress", "egress"):
                name = "classifier_ingr" if direction == "ingress" else "classifier_egre"
                prog = self.prog(-1, name)
                self.box.attach(
                    ns,
                    dev,
                    direction,
                    prog,
                    pref=pref,
                    handle=0xCA,
                    name=f"classifier_{direction}_security{len(ns.name)}_4026531992_{CWS_PID}",
                )

    def vendor_on_host_veths(
        self,
        value: int,
        *,
        pref: int,
        handle: int = 1,
        direction: str = "ingress",
        filter_name: str = "vendor",
        prog_name: str = "vendor",
    ) -> None:
        for i in range(len(self.pods)):
            self.box.attach(
                self.host,
                self.lxc(i),
                direction,
                self.prog(value, prog_name),
                pref=pref,
                handle=handle,
                name=filter_name.replace("{dev}", self.lxc(i)),
            )

    def cilium(self, pref: int = 1) -> None:
        """A Cilium 1.13+-shaped filter on the host side of every pod veth: it accepts."""
        self.vendor_on_host_veths(
            0, pref=pref, filter_name="cil_from_container-{dev}", prog_name="cil_from_contai"
        )

    def selectors(self) -> list[str]:
        return [arg for ns in self.namespaces for arg in ("--netns", ns.name)]


def node(box: Sandbox, pods: int = 2) -> Node:
    host = box.namespace("host")
    result = Node(box, host)
    for i in range(pods):
        pod = box.namespace(f"pod{i}")
        box.veth(host, f"lxc{i}", pod, "eth0")
        box.clsact(host, f"lxc{i}")
        box.clsact(pod, "eth0")
        result.pods.append(pod)
    return result


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert out, err
    doc: dict[str, Any] = json.loads(out)
    return code, doc
