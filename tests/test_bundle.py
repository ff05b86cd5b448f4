"""`tcaudit bundle`: what goes in, what never does, and asking first."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from tcaudit.cli.main import main
from tcaudit.lab.sandbox import Sandbox
from tests.conftest import validate
from tests.nodes import node

pytestmark = pytest.mark.usefixtures("privileged")


class Terminal(io.StringIO):
    """Answers typed on a terminal."""

    def isatty(self) -> bool:
        return True


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name.removeprefix("tcaudit-bundle/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_contents_manifest_and_schemas(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = node(box)
    n.cws(10)
    n.cilium()
    monkeypatch.setenv("TCAUDIT_TEST_SECRET", "s3cr3t-value-never-bundled")
    out = tmp_path / "b.tar.gz"
    assert main(["bundle", "-o", str(out), "--yes", *n.selectors()]) == 0
    err = capsys.readouterr().err
    assert "scan.json" in err and f"wrote {out}" in err
    files = members(out)
    for name in (
        "README.txt",
        "tcaudit.json",
        "scan.json",
        "recommend.json",
        "recommend.txt",
        "netlink.json",
        "tcx.json",
        "kernel.txt",
        "cws.json",
        "MANIFEST.json",
    ):
        assert name in files, name
    manifest = json.loads(files["MANIFEST.json"])["files"]
    assert set(manifest) == set(files) - {"MANIFEST.json"}
    for name, info in manifest.items():
        assert info["sha256"] == hashlib.sha256(files[name]).hexdigest()
        if name != "README.txt":  # the README describes every other file
            assert name.split("/")[0].split(".")[0] in files["README.txt"].decode()
    validate(json.loads(files["scan.json"]))
    recommend = json.loads(files["recommend.json"])
    validate(recommend)
    assert recommend["action"] == "disable-network"
    explains = [name for name in files if name.startswith("explain/") and name.endswith(".json")]
    assert len(explains) == 1  # the Cilium-like program; CWS's own are not explained
    explained = json.loads(files[explains[0]])
    validate(explained)
    assert explained["program"]["possible"] == [0]
    assert explained["program"]["disassembly"] == []  # immediates can hold addresses
    cws = json.loads(files["cws.json"])
    assert cws["classifier_priority"] == 10 and cws["system_probe_pids"] == [2115]
    netlink = json.loads(files["netlink.json"])
    host_view = next(v for k, v in netlink.items() if n.host.name in k)
    assert host_view["filters"]["lxc0 ingress"][0]["bpf"]["name"] == "cil_from_container-lxc0"
    assert (
        "CONFIG_" in files["kernel.txt"].decode()
        or "no kernel config" in files["kernel.txt"].decode()
    )
    everything = b"".join(files.values())
    assert b"s3cr3t-value-never-bundled" not in everything  # no environment variables
    assert b"198.18." not in everything  # no addresses unless asked
    tool = json.loads(files["tcaudit.json"])
    assert tool["command"][:2] == ["tcaudit", "bundle"]

    with_addresses = tmp_path / "a.tar.gz"
    assert (
        main(["bundle", "-o", str(with_addresses), "--yes", "--include-addresses", *n.selectors()])
        == 0
    )
    full = members(with_addresses)
    assert b"198.18." in full["addresses.json"]
    [name] = [n for n in full if n.startswith("explain/") and n.endswith(".json")]
    assert json.loads(full[name])["program"]["disassembly"]


def test_asks_first_and_refuses_without_a_terminal(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = node(box, pods=1)
    out = tmp_path / "b.tar.gz"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["bundle", "-o", str(out), *n.selectors()]) == 2
    err = capsys.readouterr().err
    assert "no terminal to confirm on" in err and "--yes" in err and "scan.json" in err
    assert not out.exists()
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert main(["bundle", "-o", str(out), *n.selectors()]) == 0
    assert "nothing written" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert main(["bundle", "-o", str(out), *n.selectors()]) == 0
    assert out.exists() and "scan.json" in members(out)
    assert (
        main(["bundle", "-o", str(tmp_path / "missing" / "b.tar.gz"), "--yes", *n.selectors()]) == 2
    )


@pytest.mark.parametrize("command", ["bundle", "snapshot", "recommend"])
def test_an_unwritable_output_fails_before_any_work(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line and exit 2 before the node is read: nothing collected, nothing listed."""
    import tcaudit.pipeline

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the node was read before the output was checked")

    monkeypatch.setattr(tcaudit.pipeline, "inventory", never)
    args = [command, "-o", "/nonexistent/x.tgz", "--netns", "self"]
    if command == "recommend":
        args += ["--format", "json"]
    code = main([*args, "--yes"] if command == "bundle" else args)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (
        "tcaudit: error: -o /nonexistent/x.tgz: cannot write it: No such file or directory\n"
    )


@pytest.mark.usefixtures("privileged")
def test_recommend_writes_the_agent_checks_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`recommend --format json -o PATH`: atomically, 0644, with generated_at and the
    classifier counts the Datadog Agent check reads."""
    import stat

    target = tmp_path / "recommend.json"
    assert main(["recommend", "--format", "json", "-o", str(target), "--netns", "self",
                 "--dev", "lo"]) == 0
    assert capsys.readouterr().out == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    doc = json.loads(target.read_text())
    validate(doc)
    assert doc["generated_at"].endswith("Z") and isinstance(doc["classifiers"], list)
    assert [p.name for p in tmp_path.iterdir()] == ["recommend.json"]  # no temporary left
