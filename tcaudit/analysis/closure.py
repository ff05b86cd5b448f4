"""The tail-call closure and the public entry point ``analyse()`` (being split out of interp)."""

from tcaudit.analysis.interp import Analysis, CodeSource, ProgramCode, TailCall, analyse

__all__ = ["Analysis", "CodeSource", "ProgramCode", "TailCall", "analyse"]
