"""Tilted or knocked-over bin: ``tilt`` (major) from the sensor's tilt/position flag
(Milesight EM310-UDL ``position: tilt``; canonical metric ``tilt``, 1 = abnormal), debounced
like the fill level; clears when the flag reads 0 for the same number of readings."""

from __future__ import annotations

from analytics.rules._flags import flag_rule
from analytics.rules.base import Context, Verdict
from lorong.core import alerts

SPEC = alerts.TILT
TYPE = SPEC.name
(MAJOR,) = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``tilt`` for every bin reporting the flag."""
    return flag_rule(ctx, "tilt", TYPE, MAJOR)
