"""The markdown format (``check --format markdown``): a job summary or PR comment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcaudit.output.interface import Format, failing
from tcaudit.output.sanitize import shown

if TYPE_CHECKING:
    from tcaudit.advice.recommend import Recommendation

# what would make a table cell end, an HTML tag, a link or emphasis in GitHub's markdown
# (job summaries and PR comments render HTML); `_` is left alone: GFM ignores it inside
# words, and names are full of it
_MARKUP = str.maketrans(
    {
        "|": "\\|",
        "[": "\\[",
        "]": "\\]",
        "*": "\\*",
        "`": "\\`",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
    }
)


def text(value: str) -> str:
    """A vendor-chosen string as markdown text: shown (no control or bidi character, no
    newline), then its markup escaped."""
    return shown(value).translate(_MARKUP)


def check_markdown(rec: Recommendation, fail_on: str) -> str:
    bad = failing(rec.findings, fail_on)
    status = "❌ FAIL" if bad else "✅ OK"
    out = [f"### tcaudit check: {status} (fail on `{fail_on}`)", "", text(rec.summary), ""]
    out += [
        f"**Action:** `{rec.action}`"
        + (
            f", `classifier_priority: {rec.classifier_priority}`"
            if rec.classifier_priority is not None
            else ""
        ),
        "",
    ]
    if rec.findings:
        from tabulate import tabulate  # a GitHub pipe table; only this report needs it

        rows = [
            (f.level, f.kind,
             text(f"{f.where.netns} {f.where.interface} {f.where.hook}") if f.where else "",
             text(f.vendor or ""), text(f.message))
            for f in rec.findings
        ]
        out += [tabulate(rows, headers=["level", "kind", "where", "vendor", "message"],
                         tablefmt="github", disable_numparse=True), ""]
    if rec.action != "keep":
        out += [
            "<details><summary>settings to paste</summary>",
            "",
            "```yaml",
            rec.snippets["system_probe_yaml"].rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


class MarkdownFormat(Format):
    def check(self, rec: Recommendation, fail_on: str, *, show_all: bool = False) -> str:
        return check_markdown(rec, fail_on)
