"""Time zones with daylight saving (issue 14, item 12).

``next_collection`` is strictly after ``now`` at every minute of a DST change, including the
repeated hour of Europe/London on 2026-10-25 (01:00-02:00 happens twice) and the missing hour of
2026-03-29. (``GET /routes`` and the configured zone: ``tests/api/test_routes_zone.py``.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from analytics.forecast import next_collection

LONDON = "Europe/London"


def test_a_round_in_the_repeated_hour_is_not_in_the_past() -> None:
    """01:20 GMT on 2026-10-25 (01:20 UTC) comes after the day's 01:30 round (01:30 BST = 00:30 UTC):
    the next round is the next day's 01:30 GMT."""
    now = datetime(2026, 10, 25, 1, 20, tzinfo=UTC)
    got = next_collection(now, ["01:30"], range(7), LONDON)
    assert got > now
    assert got == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("day", [datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC)])
def test_every_minute_across_a_change(day: datetime) -> None:
    """Each minute for 36 h around both London changes: the next round is after now, within a day
    and a hour, and falls on 01:30 local (or 02:30 BST on the day 01:30 does not exist)."""
    zone = ZoneInfo(LONDON)
    for minute in range(36 * 60):
        now = day + timedelta(minutes=minute)
        got = next_collection(now, ["01:30"], range(7), LONDON)
        assert now < got <= now + timedelta(hours=25), (now, got)
        local = got.astimezone(zone)
        assert (local.hour, local.minute) in ((1, 30), (2, 30)), (now, local)
