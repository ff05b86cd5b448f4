"""Named network namespaces (``kernel.nsfs``) beside iproute2's own, against the kernel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tcaudit.kernel import nsfs
from tests.conftest import require_privileged


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == str(path) for line in info)


def test_a_named_namespace_is_removed_after_ip_netns_add_made_its_directory_a_mount(
        tmp_path: Path) -> None:
    """``ip netns add`` makes its directory a shared mount, binding it over itself when
    it is not one (iproute2 ip/ipnetns.c). Done after ours, that bind hid our namespace
    file under it and removing it failed (EBUSY) for as long as the mount was there;
    ours now makes the directory the shared mount first, as ip does."""
    require_privileged()
    run = tmp_path / "netns"  # a directory of the test's own, not /run/netns
    name = f"tcatnsfs{os.getpid()}"
    try:
        nsfs.create_named_netns(name, str(run))
        assert _mounted(run)
        # what `ip netns add` does first, in mount(8) terms
        if subprocess.run(["mount", "--make-rshared", str(run)]).returncode != 0:
            subprocess.run(["mount", "--rbind", str(run), str(run)], check=True)
            subprocess.run(["mount", "--make-rshared", str(run)], check=True)
        nsfs.delete_named_netns(name, str(run))
        assert not (run / name).exists()
        assert not _mounted(run / name)
    finally:
        for _ in range(3):  # the directory's own mounts, however many there are
            if (run / name).exists():
                subprocess.run(["umount", "-l", str(run / name)], capture_output=True)
            if not _mounted(run):
                break
            subprocess.run(["umount", "-l", str(run)], capture_output=True)
