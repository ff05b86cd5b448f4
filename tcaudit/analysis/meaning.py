"""TC_ACT_*/TCX_* values and their meaning for an attach mode (being split out of interp)."""

from tcaudit.analysis.interp import (
    TC_ACT_NAMES,
    TCX_NAMES,
    Mode,
    effective,
    effective_one,
    verdict_names,
)

__all__ = ["TCX_NAMES", "TC_ACT_NAMES", "Mode", "effective", "effective_one", "verdict_names"]
