"""Running the image's root filesystem the way the DaemonSets run the image.

No container runtime can run the image here (podman/crun cannot set its rlimits), so
deploy/image/run-rootfs.sh runs it: a private mount namespace, the root filesystem as
the lower layer of an overlay, the host's /proc, /sys and /dev (privileged, hostPID,
hostNetwork) and the pod's volumes. The volumes come from the DaemonSet manifests
themselves: a hostPath is a directory of a stand-in node under the test's tmp_path,
made 0755 as the kubelet makes a DirectoryOrCreate one, except the netns directories,
which are the host's own (the test namespaces live there); an emptyDir is a fresh
directory. Every mount lives in the runner's namespace only: ``Container.close()`` (a
finalizer) stops what is still running and fails the test, after unmounting it, if
any mount under the root filesystem or the runner's scratch directory reached the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "deploy" / "image" / "run-rootfs.sh"
DEPLOY = ROOT / "deploy"
# hostPaths the test must share with the real host: the namespaces it made are there
HOST_SHARED = ("/run/netns", "/var/run/netns")


def daemonset(manifest: str) -> dict[str, Any]:
    """The one DaemonSet in deploy/MANIFEST."""
    docs = [d for d in yaml.safe_load_all((DEPLOY / manifest).read_text()) if d]
    [found] = [d for d in docs if d["kind"] == "DaemonSet"]
    assert isinstance(found, dict)
    return found


def mounts_under(prefixes: Sequence[Path]) -> list[str]:
    """Mount points of this (the host's) mount namespace at or under any prefix."""
    roots = [str(p.resolve()) for p in prefixes]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 and friends
        if any(point == r or point.startswith(r + "/") for r in roots):
            found.append(point)
    return found


@dataclass(frozen=True)
class Volume:
    host: Path
    path: str
    read_only: bool

    def arg(self) -> str:
        return f"{self.host}:{self.path}" + (":ro" if self.read_only else "")


@dataclass
class Container:
    """One pod's worth of volumes on a stand-in node; run commands in the image."""

    rootfs: Path
    tmp: Path
    manifest: str = "tcaudit-agent-check.yaml"
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    node_root: Path | None = None  # another pod's stand-in node, to share its hostPaths
    _started: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = self.node_root or self.tmp / "node"  # the stand-in node's filesystem
        self.scratch = self.tmp / "scratch"  # TMPDIR of the runner: its overlay layers
        self.scratch.mkdir(parents=True, exist_ok=True)
        spec = daemonset(self.manifest)["spec"]["template"]["spec"]
        [container] = spec["containers"]
        self.spec = container
        sources = {v["name"]: v for v in spec["volumes"]}
        for mount in container.get("volumeMounts", []):
            source = sources[mount["name"]]
            self.volumes.append(
                Volume(self._host_dir(source), mount["mountPath"], bool(mount.get("readOnly")))
            )
        for var in container.get("env", []):
            if "value" in var:
                self.env[var["name"]] = var["value"]
            elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                self.env[var["name"]] = "image-test-node"
            else:
                raise AssertionError(f"the test cannot stand in for env {var}")

    def _host_dir(self, source: Mapping[str, Any]) -> Path:
        if "emptyDir" in source:
            path: Path = self.tmp / "emptydir" / str(source["name"])
            path.mkdir(parents=True)
            return path
        host = str(source["hostPath"]["path"])
        if host in HOST_SHARED:
            Path(host).mkdir(parents=True, exist_ok=True)
            return Path(host)
        path = self.hostpath(host)
        if source["hostPath"].get("type") == "DirectoryOrCreate":
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.chmod(0o755)  # as the kubelet makes it, whatever the umask
        return path

    def make_writable(self, *paths: str) -> None:
        """Mount the volumes at PATHS read-write (a debug pod beside the DaemonSet's)."""
        assert set(paths) <= {v.path for v in self.volumes}, paths
        self.volumes = [replace(v, read_only=False) if v.path in paths else v for v in self.volumes]

    def hostpath(self, path: str) -> Path:
        """Where the stand-in node keeps a host path the pod mounts."""
        return self.node / path.lstrip("/")

    def argv(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        args = [str(RUNNER)]
        for volume in self.volumes:
            args += ["-v", volume.arg()]
        for name, value in {**self.env, **(env or {})}.items():
            args += ["-e", f"{name}={value}"]
        return [*args, str(self.rootfs), *command]

    def _runner_env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "TMPDIR": str(self.scratch)}

    def run(
        self, *command: str, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run COMMAND in the image and wait; checks nothing stayed mounted."""
        try:
            return subprocess.run(
                self.argv(command, env),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self._runner_env(),
            )
        finally:
            self.assert_unmounted()

    def start(self, command: Sequence[str]) -> subprocess.Popen[str]:
        """Start COMMAND in the image in a session of its own (stopped by ``stop``)."""
        proc = subprocess.Popen(
            self.argv(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._runner_env(),
            start_new_session=True,
        )
        self._started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> tuple[int, str, str]:
        """SIGTERM to the whole session (as the kubelet stops a pod), SIGKILL after 10 s;
        the exit status and what it wrote to stdout and stderr."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it may have ended
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        self._started.remove(proc)
        return proc.returncode, out, err

    def assert_unmounted(self) -> None:
        """Nothing of the runner is mounted on the host; if something is, unmount it
        (deepest first) and fail."""
        leaked = mounts_under([self.rootfs, self.scratch])
        for point in sorted(leaked, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        assert leaked == [], f"mounts left on the host: {leaked}"

    def close(self) -> None:
        """The finalizer: stop whatever still runs, then check for mounts and scratch."""
        try:
            for proc in list(self._started):
                self.stop(proc)
        finally:
            self.assert_unmounted()
        left = list(self.scratch.iterdir())
        for path in left:  # plain files only: no mount reached the host (checked above)
            shutil.rmtree(path)
        assert left == [], f"the runner left its scratch layers: {left}"


def wait_for(check: Callable[[], bool], timeout: float, proc: subprocess.Popen[str]) -> bool:
    """Poll CHECK until it holds, the process ends, or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return check()
        time.sleep(0.2)
    return False
