"""Alert rules, one module per alert kind; each exposes ``TYPE`` and ``evaluate(ctx) -> list[Verdict]``.

:data:`RULES` is the explicit registry the job runs, in this order (``bin_full`` before
``bin_full_soon``, which defers to it).
"""

from __future__ import annotations

from collections.abc import Callable

from analytics.rules import (
    battery,
    bin_full,
    fire,
    full_soon,
    lid_open,
    offline,
    pm25_episode,
    pm25_high,
    pm25_spike,
    rejects,
    stuck,
    tilt,
)
from analytics.rules.base import Context, Verdict

Rule = Callable[[Context], list[Verdict]]

RULES: dict[str, Rule] = {
    m.TYPE: m.evaluate
    for m in (bin_full, full_soon, fire, tilt, lid_open, offline, stuck, battery, rejects, pm25_high, pm25_spike,
              pm25_episode)
}
"""Alert type -> rule."""
