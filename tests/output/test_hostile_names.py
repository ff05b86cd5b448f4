"""Names another vendor chose never reach a terminal, an XML report or a markdown table
as anything but text: every human format shows them escaped (output/sanitize.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from tcaudit.advice.recommend import recommend
from tcaudit.lab.sandbox import Sandbox
from tcaudit.model import Holder, Scan
from tcaudit.output.interface import formatter
from tcaudit.output.layout import WIDE, Layout
from tcaudit.output.markdown import check_markdown
from tcaudit.output.sanitize import shown
from tests.output.test_golden import node

ROOT = Path(__file__).resolve().parents[2]

# ESC + CSI sequence, BEL, a closing tag, a table pipe, a newline, a bidi override, the C1
# CSI (U+009B), a zero-width space, a line separator, markup, and a literal "\x1b"
HOSTILE = "\x1b[31mEVIL\x07</failure>|x\n\u202eRTL\u009b[2J\u200b\u2028<b>[l](u)*\\x1b"
# two different names that errors="replace" would both have shown as "bad\ufffd"
UNDECODABLE = tuple(raw.decode(errors="surrogateescape") for raw in (b"bad\xff", b"bad\xfe"))


def hostile_scan() -> Scan:
    scan = node("node-disable", 1)
    ns = scan.namespaces[0]
    iface = ns.interfaces[0]
    hook = iface.hooks[0]
    vendor = hook.entries[0]
    assert vendor.program is not None
    program = replace(
        vendor.program,
        name=UNDECODABLE[0],
        holders=(Holder(4242, UNDECODABLE[1] + HOSTILE),),
    )
    spoof = replace(vendor, filter_name=HOSTILE, program=program, vendor=None)
    hook = replace(hook, entries=(spoof, *hook.entries[1:]))
    iface = replace(iface, name="lxc\x1b]0;owned\x07", hooks=(hook, *iface.hooks[1:]))
    netns = replace(ns.netns, label="pod " + HOSTILE)
    ns = replace(ns, netns=netns, interfaces=(iface, *ns.interfaces[1:]))
    return replace(scan, namespaces=(ns, *scan.namespaces[1:]))


def assert_inert(text: str) -> None:
    """No control (but the line breaks), format, separator or surrogate character."""
    text.encode("utf-8")  # strict: a lone surrogate would raise here
    for ch in text:
        if ch == "\n":
            continue
        assert unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp", "Cs"}, repr(ch)


def test_shown_escapes_what_a_terminal_would_act_on() -> None:
    assert shown("plain-name_1.2") == "plain-name_1.2"
    assert shown("a\x1b[31mb\x07") == "a\\x1b[31mb\\x07"
    assert shown("x\u009by\u202ez\u2066\u2028") == "x\\x9by\\u202ez\\u2066\\u2028"
    assert shown("nl\nand\ttab\r") == "nl\\x0aand\\x09tab\\x0d"
    # a literal backslash-x in a name and an escaped ESC look different
    assert shown("\\x1b") == "\\\\x1b" != shown("\x1b")
    assert [shown(n) for n in UNDECODABLE] == ["bad\\xff", "bad\\xfe"]
    assert shown("café 😀") == "café 😀"


def test_every_human_format_shows_hostile_names_as_text() -> None:
    scan = hostile_scan()
    rec = recommend(scan)
    assert rec.action == "disable-network"
    wide = formatter("table", layout=WIDE)
    outputs = {
        "scan": wide.scan(scan, show_all=True),
        "recommend": wide.recommend(rec),
        "check": wide.check(rec, "warning"),
        "junit": formatter("junit").check(rec, "warning"),
        "markdown": formatter("markdown").check(rec, "warning"),
    }
    for text in outputs.values():
        assert_inert(text)
    # fitted to any width (names shortened, columns left out), in colour or not: still
    # nothing but text, and no name cut inside one of its escapes
    for width in (40, 80, 100, 200):
        plain = formatter("table", layout=Layout(width=width))
        colour = formatter("table", layout=Layout(width=width, colour=True))
        for render in (
            lambda f: f.scan(scan),
            lambda f: f.recommend(rec),
            lambda f: f.check(rec, "blind"),
        ):
            text = render(plain)
            assert_inert(text)
            assert re.search(r"(?<!\\)\\(x[0-9a-f]?|u[0-9a-f]{0,3})…", text) is None
            # colour adds our SGR codes and nothing else
            assert re.sub(r"\x1b\[[0-9;]*m", "", render(colour)) == text
    table = outputs["scan"]
    assert "\\x1b[31mEVIL\\x07</failure>|x\\x0a\\u202eRTL\\x9b[2J\\u200b\\u2028" in table
    assert "bad\\xff" in table and "bad\\xfe" in table  # distinct names stay distinct
    assert "lxc\\x1b]0;owned\\x07" in table
    # one table row per entry: the name's newline did not split its row
    assert sum("EVIL" in line for line in table.splitlines()) == 2  # header label + row


def test_junit_parses_and_carries_the_names_as_text() -> None:
    rec = recommend(hostile_scan())
    root = ET.fromstring(formatter("junit").check(rec, "warning"))
    failures = root.findall(".//failure")
    assert failures, "the spoofed pref-1 filter must fail a testcase"
    texts = " ".join((f.text or "") + f.get("message", "") for f in failures)
    assert "</failure>" in texts  # as text, not as markup
    assert "\\x1b" in texts and "\x1b" not in texts
    names = [case.get("classname", "") for case in root.iter("testcase")]
    assert any("\\x1b[31mEVIL" in n for n in names)


def test_markdown_rows_keep_their_columns_and_no_markup_gets_through() -> None:
    rec = recommend(hostile_scan())
    text = check_markdown(rec, "warning")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) >= 2
    for row in rows:
        unescaped = row.replace("\\|", "")
        assert unescaped.count("|") == 6, row
    assert "<b>" not in text and "&lt;b&gt;" in text
    assert "[l](u)" not in text and "\\[l\\](u)" in text


@pytest.mark.usefixtures("privileged")
def test_a_hostile_filter_name_on_a_real_hook(box: Sandbox) -> None:
    """Through the kernel and the CLI: the table's bytes hold no ESC or BEL, the JSON
    keeps the exact bytes the vendor chose."""
    host = box.namespace("host")
    pod = box.namespace("pod")
    box.veth(host, "veth0", pod, "eth0")
    box.clsact(host, "veth0")
    name = "\x1b[2J\x07evil\u202e" + b"\xff".decode(errors="surrogateescape")
    box.attach(host, "veth0", "ingress", box.load_returning(0, "ok"), pref=1, handle=1, name=name)
    cmd = [sys.executable, "-m", "tcaudit", "scan", "--netns", host.name]
    fitted = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True).stdout
    table = subprocess.run([*cmd, "--wide"], cwd=ROOT, capture_output=True, check=True).stdout
    for text in (fitted, table):
        assert b"\x1b" not in text and b"\x07" not in text and b"\xe2\x80\xae" not in text
    assert b"\\x1b[2J\\x07evil\\u202e\\xff" in table
    doc = subprocess.run(
        [*cmd, "--format", "json"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    entries = [
        e
        for ns in json.loads(doc)["namespaces"]
        for i in ns["interfaces"]
        for h in i["hooks"]
        for e in h["entries"]
    ]
    assert [e["filter_name"] for e in entries] == [name]
