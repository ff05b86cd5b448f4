"""The markdown format (``check --format markdown``): a job summary or PR comment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcaudit.output.interface import Format, failing

if TYPE_CHECKING:
    from tcaudit.advice.recommend import Recommendation

def check_markdown(rec: Recommendation, fail_on: str) -> str:
    bad = failing(rec.findings, fail_on)
    status = "❌ FAIL" if bad else "✅ OK"
    out = [f"### tcaudit check: {status} (fail on `{fail_on}`)", "", rec.summary, ""]
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
        out += ["| level | kind | where | vendor | message |", "|---|---|---|---|---|"]
        for f in rec.findings:
            where = f"{f.where.netns} {f.where.interface} {f.where.hook}" if f.where else ""
            message = f.message.replace("|", "\\|")
            out.append(f"| {f.level} | {f.kind} | {where} | {f.vendor or ''} | {message} |")
        out.append("")
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
    def check(self, rec: Recommendation, fail_on: str) -> str:
        return check_markdown(rec, fail_on)
