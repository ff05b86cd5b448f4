"""`tcaudit selftest`: the network side of the agent's `runtime self-test`.

In a throwaway pair of namespaces: a classifier that accepts (TC_ACT_OK) at pref 5, one
observer in front of it (pref 4) and one behind it (pref 6), some packets, and the
check that the front observer counted them and the one behind saw none. Everything is
removed at the end; the last step checks that nothing was left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tcaudit.errors import EnvironmentProblem
from tcaudit.inventory.scan import Selection
from tcaudit.lab import sandbox
from tcaudit.live.observer import Observer
from tcaudit.live.probe import plan, run
from tcaudit.pipeline import inventory

STEPS = ("observer load", "namespaces", "load", "attach", "counting", "cleanup")


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SelftestResult:
    steps: tuple[Step, ...]
    environment: bool  # the kernel refused the observer (exit 3), not a broken chain

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and len(self.steps) == len(STEPS)


def selftest(packets: int = 20) -> SelftestResult:
    steps: list[Step] = []

    def step(name: str, action: Callable[[], str]) -> bool:
        try:
            detail = action()
        except EnvironmentProblem:
            raise
        except Exception as err:  # a failed step is the answer, not a crash
            steps.append(Step(name, False, f"{type(err).__name__}: {err}"))
            return False
        steps.append(Step(name, True, detail))
        return True

    try:
        observer = Observer()  # bytecode: no compiler and no kernel headers needed
    except EnvironmentProblem as err:
        steps.append(Step("observer load", False, str(err)))
        return SelftestResult(tuple(steps), environment=True)
    steps.append(Step("observer load", True, "the observer's bytecode loaded (no compiler)"))
    box = sandbox.Sandbox(prefix="tcatself")
    try:
        names: list[str] = []

        def namespaces() -> str:
            host = box.namespace("host")
            pod = box.namespace("pod")
            box.veth(host, "veth0", pod, "eth0")
            box.clsact(host, "veth0")
            names.extend([host.name, pod.name])
            return f"{host.name} <-> {pod.name}"

        def load() -> str:
            accept = box.load_returning(0, "selftest_ok")
            box.attach(
                box.namespaces[0],
                "veth0",
                "ingress",
                accept,
                pref=5,
                handle=1,
                name="selftest_accept",
            )
            return f"an accepting classifier (program {accept.id}) at pref 5"

        result_holder: list[object] = []

        def attach_and_count() -> str:
            scan = inventory(
                Selection(
                    netns=(names[0], names[1]), devs=("veth0", "eth0"), hooks=("clsact/ingress",)
                )
            )
            where = plan(scan, at=(4, 6))
            if len(where.placements) != 2:
                raise RuntimeError(f"expected 2 observers, planned {len(where.placements)}")
            result_holder.append(run(where, observer, duration=0.6, generate=True))
            return "observers at pref 4 (front) and pref 6 (behind), attached and removed"

        def counting() -> str:
            result = result_holder[0]
            assert hasattr(result, "observers")
            front, behind = sorted(result.observers, key=lambda o: o.placement.pref)
            if front.counts.packets < packets // 2:
                raise RuntimeError(f"the front observer counted {front.counts.packets} packets")
            if behind.counts.packets != 0:
                raise RuntimeError(
                    f"the observer behind TC_ACT_OK counted "
                    f"{behind.counts.packets} packets (expected 0)"
                )
            return f"front saw {front.counts.packets} packets, behind the accepting classifier 0"

        stages = (
            ("namespaces", namespaces),
            ("load", load),
            ("attach", attach_and_count),
            ("counting", counting),
        )
        all(step(name, action) for name, action in stages)  # stops at the first failure
    finally:

        def cleanup() -> str:
            box.close()
            observer.close()
            left = sandbox.leftover_namespaces(box.tag)
            if left:
                raise RuntimeError(f"namespaces left behind: {', '.join(left)}")
            return "namespaces, veths, classifiers and observers removed"

        step("cleanup", cleanup)
    return SelftestResult(tuple(steps), environment=False)
