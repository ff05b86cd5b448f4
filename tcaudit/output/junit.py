"""The JUnit format (``check --format junit``): one testcase per namespace CWS attaches
in, failing with that namespace's findings, for CI systems that show test reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcaudit import __version__
from tcaudit.output.interface import LEVELS, Format
from tcaudit.output.sanitize import shown

if TYPE_CHECKING:
    from tcaudit.advice.recommend import Finding, Recommendation

def escape(text: str) -> str:
    """XML character data for one line of text (xml.sax.saxutils would pull in urllib:
    10 ms per run). XML 1.0 cannot carry ESC or most other controls, not even as a
    character reference, so they are shown (escaped as text) first."""
    return shown(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(text: str) -> str:
    return '"' + escape(text).replace('"', "&quot;") + '"'


def check_junit(rec: Recommendation, fail_on: str) -> str:
    """One testcase per hook CWS attaches to, failing with that hook's findings."""
    by_hook: dict[tuple[str, str, str], list[Finding]] = {}
    general: list[Finding] = []
    for finding in rec.findings:
        if finding.where is None:
            general.append(finding)
        else:
            key = (finding.where.netns, finding.where.interface, finding.where.hook)
            by_hook.setdefault(key, []).append(finding)
    threshold = LEVELS[fail_on]
    cases = []
    for summary in rec.namespaces:
        cases.append(
            (
                f"netns {summary.netns}",
                f"{summary.hooks} hooks",
                [f for key, fs in by_hook.items() if key[0] == summary.netns for f in fs],
            )
        )
    cases += [("node", "general", general)]
    body = []
    failures = 0
    for classname, name, found in cases:
        bad = [f for f in found if LEVELS[f.level] >= threshold]
        failures += bool(bad)
        inner = ""
        if bad:
            text = "\n".join(escape(f"[{f.level}] {f.message}") for f in bad)
            inner = (
                f"<failure message={quoteattr(bad[0].message)} type={quoteattr(bad[0].kind)}>"
                f"{text}</failure>"
            )
        body.append(
            f"    <testcase classname={quoteattr(classname)} name={quoteattr(name)}>"
            f"{inner}</testcase>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites name="tcaudit check">\n  <testsuite name="tcaudit {__version__}" '
        f'tests="{len(cases)}" failures="{failures}">\n'
        + "\n".join(body)
        + f"\n    <system-out>{escape(rec.summary)}</system-out>\n  </testsuite>\n</testsuites>\n"
    )


class JunitFormat(Format):
    def check(self, rec: Recommendation, fail_on: str, *, show_all: bool = False) -> str:
        return check_junit(rec, fail_on)
