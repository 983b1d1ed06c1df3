"""Lid left open: ``lid_open`` (minor) from the ``lidOpen`` flag (FIWARE WasteContainer status
"lid open"), debounced like the fill level; clears when the flag reads 0 for as many readings."""

from __future__ import annotations

from analytics.rules._flags import flag_rule
from analytics.rules.base import Context, Verdict
from lorong.core import alerts

SPEC = alerts.LID_OPEN
TYPE = SPEC.name
(MINOR,) = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``lid_open`` for every bin reporting the flag."""
    return flag_rule(ctx, "lidOpen", TYPE, MINOR)
