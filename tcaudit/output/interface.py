"""The one way to render: ``formatter(name)`` gives the format the user chose with
``--format``, and every format answers the same calls, one per document.

Modelled on pip-audit's ``_format`` package: a base class whose methods each render one
kind of document to a string, one module per format (``json_format``, ``text``,
``junit``, ``markdown``), and a table saying which format renders which document, so
the CLI's ``--format`` choices come from here and a format added here shows up in every
command that can use it. A format module is imported only when chosen (``scan --format
json`` never imports tabulate).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from tcaudit.errors import UsageError

if TYPE_CHECKING:  # the documents' types; importing them is the caller's business
    from tcaudit.advice.diff import Change
    from tcaudit.advice.explain import Explanation
    from tcaudit.advice.merge import ClusterAnswer
    from tcaudit.advice.recommend import Finding, Recommendation
    from tcaudit.model import (
        CleanupReport,
        ProbeResult,
        Scan,
        WatchEvent,
        WatchFinding,
        WatchSummary,
    )

DOCUMENTS: Final = (
    "scan",
    "explain",
    "recommend",
    "check",
    "diff",
    "merge",
    "probe",
    "cleanup",
    "watch",
)

# name -> (module, class, documents it renders); the first format listed for a document
# is that command's default
FORMATS: Final[dict[str, tuple[str, str, frozenset[str]]]] = {
    "table": (
        "text",
        "TableFormat",
        frozenset({"scan", "explain", "recommend", "check", "diff", "merge", "probe", "cleanup"}),
    ),
    "json": (
        "json_format",
        "JsonFormat",
        frozenset({"scan", "explain", "recommend", "check", "diff", "merge", "probe"}),
    ),
    "junit": ("junit", "JunitFormat", frozenset({"check"})),
    "markdown": ("markdown", "MarkdownFormat", frozenset({"check"})),
    "text": ("text", "LinesFormat", frozenset({"watch"})),
    "jsonl": ("json_format", "JsonLinesFormat", frozenset({"watch"})),
}

LEVELS: Final = {"blind": 2, "warning": 1, "never": 99}


def formats_for(document: str) -> list[str]:
    """The ``--format`` choices of a command, its default first."""
    return [name for name, (_, _, docs) in FORMATS.items() if document in docs]


def formatter(name: str, **options: Any) -> Format:
    """The format called ``name`` (``pretty=`` for json), imported on first use."""
    try:
        module, cls, _ = FORMATS[name]
    except KeyError:
        raise UsageError(f"--format {name}: not one of {', '.join(FORMATS)}") from None
    made: Format = getattr(importlib.import_module(f"tcaudit.output.{module}"), cls)(**options)
    made.name = name
    return made


def failing(findings: tuple[Finding, ...] | list[Change], fail_on: str) -> list[Any]:
    """Findings (or diff changes) at or above ``--fail-on``."""
    threshold = LEVELS[fail_on]
    return [f for f in findings if LEVELS[f.level] >= threshold]


def handle_text(handle: int | None) -> str | None:
    return None if handle is None else f"0x{handle:x}"


def stamp(when: float) -> str:
    """UTC, milliseconds, ``Z``: the watch's event times."""
    from datetime import UTC, datetime  # only the watch needs it

    return (
        datetime.fromtimestamp(when, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class Format:
    """Renders documents to text. A format overrides the documents it renders; asking
    any other is a usage error naming the format and the document. ``show_all`` (the
    ``--all`` flag) asks a table to list every item instead of grouping alike ones;
    documents for tools always hold every item and ignore it."""

    name = "?"

    def _cannot(self, document: str) -> UsageError:
        return UsageError(f"--format {self.name} cannot render a {document} document")

    def scan(self, scan: Scan, *, show_all: bool = False) -> str:
        raise self._cannot("scan")

    def explain(self, explanation: Explanation, *, code: bool = True) -> str:
        raise self._cannot("explain")

    def recommend(self, rec: Recommendation, *, show_all: bool = False) -> str:
        raise self._cannot("recommend")

    def check(self, rec: Recommendation, fail_on: str, *, show_all: bool = False) -> str:
        raise self._cannot("check")

    def diff(self, changes: list[Change], old: str, new: str, fail_on: str) -> str:
        raise self._cannot("diff")

    def merge(self, answer: ClusterAnswer) -> str:
        raise self._cannot("merge")

    def probe(self, result: ProbeResult) -> str:
        raise self._cannot("probe")

    def cleanup(self, report: CleanupReport) -> str:
        raise self._cannot("cleanup")

    def watch_item(self, item: WatchEvent | WatchFinding) -> str:
        """One line (no newline) per event or finding, as it happens."""
        raise self._cannot("watch")

    def watch_summary(self, summary: WatchSummary) -> str:
        raise self._cannot("watch")
