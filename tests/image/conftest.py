"""Fixtures of the image test (`make image-test`, docs/image.md).

TCAUDIT_IMAGE_ROOTFS names the image's root filesystem (`make image` exports it to
build/image/rootfs, the default). Under TCAUDIT_REQUIRE_PRIVILEGED=1, which
`make image-test` sets, a missing root filesystem or a machine that cannot run
privileged tests FAILS the tests instead of skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcaudit.lab.sandbox import Sandbox
from tests.conftest import require_privileged
from tests.image.container import ROOT, Container
from tests.nodes import Node, node


@pytest.fixture(scope="session")
def rootfs() -> Path:
    require_privileged()
    path = Path(os.environ.get("TCAUDIT_IMAGE_ROOTFS", ROOT / "build" / "image" / "rootfs"))
    if not (path / "opt" / "tcaudit" / "bin" / "tcaudit").is_file():
        problem = f"no image root filesystem at {path} (`make image` builds it)"
        if os.environ.get("TCAUDIT_REQUIRE_PRIVILEGED") == "1":
            pytest.fail(f"{problem}, but the image test is required")
        pytest.skip(problem)
    return path.resolve()


@pytest.fixture
def container(rootfs: Path, tmp_path: Path) -> Iterator[Container]:
    """The agent-check DaemonSet's pod on a stand-in node; stopped and checked for
    mounts in the finalizer, even when the test fails."""
    made = Container(rootfs, tmp_path)
    try:
        yield made
    finally:
        made.close()
        # the overlay took every write: the root filesystem is still as built
        assert not (rootfs / "run" / "netns").exists()
        assert not (rootfs / "var" / "lib" / "tcaudit" / "recommend.json").exists()


@pytest.fixture
def image_node(
    container: Container, box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Node:
    """A node of two pods with a CWS stand-in at pref 10 and a Cilium-like accepting
    filter at pref 1 on the host veths; its namespaces are recorded where the pod's
    /run/tcaudit hostPath is, so tcaudit in the image knows it made them."""
    monkeypatch.setenv("TCAUDIT_MADE_DIR", str(container.hostpath("/run/tcaudit") / "made"))
    result = node(box, pods=2)
    result.cws(10)
    result.cilium(1)
    return result


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in node both DaemonSets' pods run on: they share its hostPaths (the
    verdict cache, /run/tcaudit), as on a real node, so the second finds the cache warm."""
    return tmp_path_factory.mktemp("node")


@pytest.fixture
def pod_on_node(
    rootfs: Path, tmp_path: Path, one_node: Path
) -> Iterator[Callable[[str], Container]]:
    """Make the pod of deploy/MANIFEST on ``one_node``; stopped and checked in the
    finalizer, even when the test fails."""
    made: list[Container] = []

    def make(manifest: str) -> Container:
        pod = Container(rootfs, tmp_path / manifest, manifest=manifest, node_root=one_node)
        made.append(pod)
        return pod

    try:
        yield make
    finally:
        for pod in made:
            pod.close()
