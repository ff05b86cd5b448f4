"""The Kubernetes manifest and the collection recipe stay what docs/ci.md says."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "tcaudit-snapshot.yaml").read_text()) if d]


def test_daemonset_sees_every_namespace_of_the_node() -> None:
    [daemonset] = [d for d in documents() if d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    [container] = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    assert "tcaudit snapshot -o" in " ".join(container["args"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/run/netns", "/var/run/netns"):
        assert mounts[path]["mountPropagation"] == "HostToContainer"
        assert mounts[path]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/run/netns"]["name"]]["hostPath"]["path"] == "/run/netns"
    assert daemonset["metadata"]["namespace"] == "tcaudit"


def test_collect_script_is_valid_bash_and_merges() -> None:
    script = DEPLOY / "collect.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "tcaudit merge" in text and "kubectl -n tcaudit cp" in text


def test_the_agent_check_daemonset_writes_where_the_check_reads() -> None:
    docs = [
        d for d in yaml.safe_load_all((DEPLOY / "tcaudit-agent-check.yaml").read_text()) if d
    ]
    [daemonset] = [d for d in docs if d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    [container] = spec["containers"]
    assert "tcaudit recommend --format json -o /var/lib/tcaudit/recommend.json" in " ".join(
        container["args"]
    )
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    for path in ("/var/lib/tcaudit", "/var/cache/tcaudit", "/run/tcaudit", "/run/netns"):
        assert volumes[mounts[path]] == path
    example = (DEPLOY.parent / "integrations" / "tcaudit" / "datadog_checks" / "tcaudit"
               / "data" / "conf.yaml.example").read_text()
    assert "status_path: /var/lib/tcaudit/recommend.json" in example


def test_the_systemd_units_write_the_same_file() -> None:
    service = (DEPLOY / "systemd" / "tcaudit-recommend.service").read_text()
    assert "recommend --format json -o /var/lib/tcaudit/recommend.json" in service
    timer = (DEPLOY / "systemd" / "tcaudit-recommend.timer").read_text()
    assert "OnUnitActiveSec=5min" in timer and "WantedBy=timers.target" in timer


def _daemonset(manifest: str) -> dict[str, Any]:
    [found] = [
        d for d in yaml.safe_load_all((DEPLOY / manifest).read_text())
        if d and d["kind"] == "DaemonSet"
    ]
    return found


def test_both_daemonsets_keep_the_cache_and_the_state_on_the_node() -> None:
    from tcaudit import __version__

    for manifest in ("tcaudit-snapshot.yaml", "tcaudit-agent-check.yaml"):
        spec = _daemonset(manifest)["spec"]["template"]["spec"]
        [container] = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for path in ("/var/cache/tcaudit", "/run/tcaudit"):
            assert volumes[mounts[path]]["hostPath"] == {
                "path": path, "type": "DirectoryOrCreate"
            }, manifest
        # the kubelet makes such a directory 0755; tcaudit uses a cache closed to others
        script = " ".join(container["args"])
        assert script.startswith("install -d -m 0700 /var/cache/tcaudit"), manifest
        # the image the Dockerfile builds, at the package's version
        assert container["image"].endswith(f"/tcaudit:{__version__}"), manifest
        assert container["command"] == ["/bin/sh", "-c"]


def test_the_dockerfile_takes_its_base_as_an_argument() -> None:
    lines = [
        line for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0].startswith("ARG BASE=") and "debian:12-slim" in lines[0]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms[0] == "FROM ${BASE} AS runtime" and froms[-1] == "FROM runtime"
    assert 'ENTRYPOINT ["tcaudit"]' in lines


def test_the_rootfs_runner_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    runner = DEPLOY / "image" / "run-rootfs.sh"
    subprocess.run(["bash", "-n", str(runner)], check=True)
    for args, says in (
        ([str(tmp_path), "true"], "is no root filesystem"),
        (["-v", "relative:/x", str(tmp_path), "true"], "absolute paths"),
        (["-v", f"{tmp_path}/missing:/x", str(tmp_path), "true"], "no directory"),
        ([str(tmp_path)], "usage:"),
    ):
        run = subprocess.run([str(runner), *args], capture_output=True, text=True)
        assert run.returncode == 2 and says in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1
