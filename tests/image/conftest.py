"""Fixtures of the image test (`make image-test`, docs/image.md).

TCAUDIT_IMAGE_ROOTFS names the image's root filesystem (`make image` exports it to
build/image/rootfs, the default). Under TCAUDIT_REQUIRE_PRIVILEGED=1, which
`make image-test` sets, a missing root filesystem or a machine that cannot run
privileged tests FAILS the tests instead of skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
