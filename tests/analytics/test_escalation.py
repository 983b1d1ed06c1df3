"""Escalation of critical alerts nobody acknowledged, and quiet hours, with a clock the test controls
(every time is passed as ``now``; nothing sleeps). Reminders reach the supervisor chat of a local
server implementing the Bot API methods used (``fake_telegram.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from analytics.alerts import AlertBook
from analytics.escalation import Escalation, remind
from analytics.jobs import run_once
from analytics.notify import NotifyRouter, build_outbox, quiet_until
from analytics.outbox import Outbox
from lorong.core.settings import NotifySettings, Settings, TelegramChat
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertHistoryRow
from lorong.storage.tables import NotificationOutboxRow as Row
from tests.analytics.fake_telegram import TOKEN, FakeTelegram
from tests.analytics.test_scenarios import NOW

CREW, SUP = -2001, -2002
CHATS = [TelegramChat(name="crew-wajo", chat_id=CREW, kecamatan=["Wajo"], can_act=True),
         TelegramChat(name="supervisors", chat_id=SUP, role="supervisor", can_act=True, language="en")]
POLICY = Escalation(after=timedelta(minutes=15), every=timedelta(minutes=30))
WITA = ZoneInfo("Asia/Makassar")
M = timedelta(minutes=1)


def wita(day: int, hh: int, mm: int = 0) -> datetime:
    """A WITA wall-clock time in March 2026, as UTC."""
    return datetime(2026, 3, day, hh, mm, tzinfo=WITA).astimezone(UTC)


def channel_rows(sessions: Any, channel: str) -> list[Row]:
    """One channel's outbox rows, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).where(Row.channel == channel).order_by(Row.id)))


def check(sessions: Any, router: NotifyRouter, now: datetime) -> list[int]:
    """One escalation check at ``now``, committed."""
    with sessions.begin() as s:
        return remind(s, AlertBook(s, channels=router, clock=lambda: now), POLICY, now)


def test_unacknowledged_critical_alert_is_sent_again_to_the_supervisors(sessions: Any) -> None:
    router = NotifyRouter(("mqtt",), tuple(CHATS), "", "Asia/Makassar")
    with sessions.begin() as s:
        book = AlertBook(s, channels=router, clock=lambda: NOW)
        fire = book.raise_("B1", "fire", "critical", NOW, {"temperature": 71.0}, "Wajo")[0].id
        full = book.raise_("B2", "bin_full", "major", NOW, {"fillingLevel": 0.85}, "Wajo")[0].id
        book.raise_("B3", "fire", "critical", NOW, {"temperature": 65.0}, "Wajo")
    with sessions.begin() as s:  # B3's fire: someone is on it at once, never escalated
        b3 = AlertBook(s, channels=router).active("B3", "fire")
        assert b3 is not None
        AlertBook(s, channels=router).acknowledge(b3.id, NOW + M, "crew:7")

    assert check(sessions, router, NOW + 14 * M) == []
    assert check(sessions, router, NOW + 15 * M) == [fire]
    assert check(sessions, router, NOW + 16 * M) == []  # not again before the cadence
    assert check(sessions, router, NOW + 44 * M) == []
    assert check(sessions, router, NOW + 45 * M) == [fire]
    with sessions.begin() as s:  # B2 becomes critical at +50: its own 15 minutes start then
        AlertBook(s, channels=router).raise_("B2", "bin_full", "critical", NOW + 50 * M, {"fillingLevel": 0.97},
                                             "Wajo")
    assert check(sessions, router, NOW + 64 * M) == []
    assert check(sessions, router, NOW + 65 * M) == [full]
    assert check(sessions, router, NOW + 75 * M) == [fire]
    with sessions.begin() as s:
        AlertBook(s, channels=router).acknowledge(fire, NOW + 80 * M, "crew:9")
    assert check(sessions, router, NOW + 200 * M) == [full]  # fire acknowledged: no more reminders

    with sessions() as s:
        reminders = [(h.alert_id, h.at, h.details) for h in s.scalars(
            select(AlertHistoryRow).where(AlertHistoryRow.action == "reminder").order_by(AlertHistoryRow.id))]
    assert reminders == [
        (fire, NOW + 15 * M, {"unacknowledged_min": 15, "reminder": 1}),
        (fire, NOW + 45 * M, {"unacknowledged_min": 45, "reminder": 2}),
        (full, NOW + 65 * M, {"unacknowledged_min": 15, "reminder": 1}),
        (fire, NOW + 75 * M, {"unacknowledged_min": 75, "reminder": 3}),
        (full, NOW + 200 * M, {"unacknowledged_min": 150, "reminder": 2})]
    sup = [(r.alert_id, r.action) for r in channel_rows(sessions, "telegram:supervisors")]
    assert sup == [(a, "reminder") for a, _, _ in reminders]  # the supervisors get the reminders only
    assert "reminder" not in {r.action for r in channel_rows(sessions, "telegram:crew-wajo")}
    assert [r.action for r in channel_rows(sessions, "mqtt")].count("reminder") == 5


@pytest.fixture
def bot() -> Iterator[FakeTelegram]:
    """The fake Bot API with the crew and supervisor chats."""
    fake = FakeTelegram(chats={CREW, SUP}).start()
    yield fake
    fake.stop()


@pytest.mark.integration
def test_the_job_reminds_and_the_supervisors_read_it(make_settings: Callable[..., Settings], sessions: Any,
                                                    influx: InfluxClient, bot: FakeTelegram,
                                                    mosquitto: stack.Service) -> None:
    settings = make_settings(mqtt_port=mosquitto.port, influx=influx, notify=NotifySettings(
        telegram_token=TOKEN, telegram_api_url=bot.url, telegram_chats=CHATS, quiet_hours="",
        escalate_after_min=10, remind_every_min=20))
    outbox = build_outbox(settings, sessions)
    policy = Escalation.from_settings(settings.notify)
    try:
        with sessions.begin() as s:
            fire = AlertBook(s, channels=outbox.routing).raise_("B1", "fire", "critical", NOW, {"temperature": 71.0},
                                                                 "Wajo")[0].id
        reports = [run_once(sessions, influx, settings.analytics, now=NOW + k * M, forecast=False, outbox=outbox,
                            escalation=policy).reminded for k in (9, 10, 29, 30)]
    finally:
        outbox.close()
    assert reports == [[], [fire], [], [fire]]
    texts = [m["text"] for m in bot.sent_to(SUP)]
    assert [t.split("\n")[0] for t in texts] == ["CRITICAL · Fire in bin: STILL NOT ACKNOWLEDGED"] * 2
    assert texts[0] == ("CRITICAL · Fire in bin: STILL NOT ACKNOWLEDGED\nB1 · Wajo\n"
                        "Keep away, do not open the lid, call the fire brigade on 113.\nsince 2026-03-02 10:00 WITA, "
                        f"seen 1x\nnot acknowledged for 10 min (reminder 1)\ntemperature 71.00\nalert {fire}")
    assert "not acknowledged for 30 min (reminder 2)" in texts[1]
    assert [(b["text"], b["callback_data"]) for b in bot.sent_to(SUP)[0]["reply_markup"]["inline_keyboard"][0]] == [
        ("On it", f"ack:{fire}"), ("Resolved", f"clr:{fire}")]
    assert [m["text"].split("\n")[0] for m in bot.sent_to(CREW)] == ["KRITIS · Api di tong: baru"]  # Bahasa


def test_quiet_until() -> None:
    assert quiet_until(wita(2, 21, 59), "22:00-06:00", WITA) is None
    assert quiet_until(wita(2, 22, 0), "22:00-06:00", WITA) == wita(3, 6)
    assert quiet_until(wita(3, 5, 59), "22:00-06:00", WITA) == wita(3, 6)
    assert quiet_until(wita(3, 6, 0), "22:00-06:00", WITA) is None
    assert quiet_until(wita(3, 13, 0), "12:00-14:00", WITA) == wita(3, 14)  # within one day
    assert quiet_until(wita(3, 14, 0), "12:00-14:00", WITA) is None
    assert quiet_until(wita(3, 23, 0), "", WITA) is None
    with pytest.raises(ValueError, match="LORONG_NOTIFY__QUIET_HOURS must be HH:MM-HH:MM"):
        NotifySettings(quiet_hours="22-6")


class Recorder:
    """An in-memory channel recording ``(alert id, action)`` of what it sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, message: Any) -> None:
        """Record it."""
        self.sent.append((message.alert_id, message.action))

    def close(self) -> None:
        """Nothing to release."""


def test_quiet_hours_hold_non_critical_alerts_for_people_only(sessions: Any) -> None:
    crew, mqtt = Recorder(), Recorder()
    router = NotifyRouter(("mqtt",), (CHATS[0],), "22:00-06:00", "Asia/Makassar")
    box = Outbox(sessions, {"mqtt": mqtt, "telegram:crew-wajo": crew}, router=router)
    night = wita(2, 23)

    def change(at: datetime, fn: Callable[[AlertBook], Any]) -> Any:
        with sessions.begin() as s:
            return fn(AlertBook(s, channels=router, clock=lambda: at))

    full = change(night, lambda b: b.raise_("B1", "bin_full", "major", night, {}, "Wajo")[0].id)
    soon = change(night, lambda b: b.raise_("B2", "bin_full_soon", "warning", night, {}, "Wajo")[0].id)
    fire = change(night + 10 * M, lambda b: b.raise_("B3", "fire", "critical", night, {}, "Wajo")[0].id)
    assert box.dispatch(now=night + 10 * M).sent == {"mqtt": 3, "telegram:crew-wajo": 1}
    assert crew.sent == [(fire, "opened")]  # the critical one is not stuck behind the held ones
    held = [r for r in channel_rows(sessions, "telegram:crew-wajo") if r.sent_at is None]
    assert [(r.alert_id, r.not_before) for r in held] == [(full, wita(3, 6)), (soon, wita(3, 6))]

    # B1 overflows at 01:00: critical now, so its held "opened" goes first, then the escalation
    change(wita(3, 1), lambda b: b.raise_("B1", "bin_full", "critical", wita(3, 1), {}, "Wajo"))
    assert box.dispatch(now=wita(3, 1)).sent == {"mqtt": 1, "telegram:crew-wajo": 2}
    assert crew.sent[1:] == [(full, "opened"), (full, "escalated")]
    assert box.dispatch(now=wita(3, 5, 59)).sent == {}  # B2's warning still waits
    assert box.dispatch(now=wita(3, 6)).sent == {"telegram:crew-wajo": 1}
    assert crew.sent[3:] == [(soon, "opened")]
    assert [a for a, _ in mqtt.sent] == [full, soon, fire, full]  # machines: at once, in order
