"""Telegram as an outbox channel, against a local server implementing the Bot API methods used
(``tests/analytics/fake_telegram.py``: ``sendMessage``, ``getUpdates``, ``answerCallbackQuery``), as
the Grafana push is tested: a message per alert change per linked chat, buttons that act on the
alert through the alert book and are refused for a chat that may not, 429 and 5xx retried after the
``retry_after`` the API gives."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from analytics.alerts import AlertBook
from analytics.notify import NotifyRouter, bot_api, build_outbox
from analytics.notify_telegram import BotApi, Handled, TelegramChannel, TelegramUpdates
from analytics.outbox import Outbox
from core.settings import NotifySettings, Settings, TelegramChat
from storage import stack
from storage.tables import AlertHistoryRow, AlertRow
from storage.tables import NotificationOutboxRow as Row
from tests.analytics.fake_telegram import TOKEN, FakeTelegram
from tests.analytics.test_scenarios import NOW

pytestmark = pytest.mark.integration

WAJO, MAKASSAR, CITY, SUP, NEW = -1001, -1002, -1003, -1004, -1005
CHATS = [
    TelegramChat(name="crew-wajo", chat_id=WAJO, kecamatan=["Wajo"], types=["bin_full", "bin_full_soon"],
                 can_act=True),
    TelegramChat(name="crew-makassar", chat_id=MAKASSAR, kecamatan=["Makassar"], can_act=True),
    TelegramChat(name="city-watch", chat_id=CITY),
    TelegramChat(name="supervisors", chat_id=SUP, role="supervisor", can_act=True),
]
WITA = ZoneInfo("Asia/Makassar")


@pytest.fixture
def bot() -> Iterator[FakeTelegram]:
    """The fake Bot API; the bot is a member of every test chat."""
    fake = FakeTelegram(chats={WAJO, MAKASSAR, CITY, SUP, NEW}).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], bot: FakeTelegram, mosquitto: stack.Service) -> Settings:
    """Settings with the four chats linked, the Bot API on the fake, no quiet hours."""
    return make_settings(mqtt_port=mosquitto.port, notify=NotifySettings(
        telegram_token=TOKEN, telegram_api_url=bot.url, telegram_chats=CHATS, quiet_hours=""))


def open_alert(sessions: Any, routing: Any, device: str, type_: str = "bin_full", kecamatan: str = "Wajo",
               severity: str = "major", details: dict[str, Any] | None = None) -> int:
    """Open one alert; its id."""
    with sessions.begin() as s:
        return AlertBook(s, channels=routing, clock=lambda: NOW).raise_(
            device, type_, severity, NOW, details or {"fillingLevel": 0.9}, kecamatan)[0].id


def keyboard(msg: dict[str, Any]) -> list[tuple[str, str]]:
    """A message's buttons as ``(label, callback data)``."""
    rows = (msg["reply_markup"] or {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


def test_a_message_per_alert_change_per_linked_chat(settings: Settings, sessions: Any, bot: FakeTelegram) -> None:
    outbox = build_outbox(settings, sessions)
    assert outbox.names == ["mqtt", "telegram:crew-wajo", "telegram:crew-makassar", "telegram:city-watch",
                            "telegram:supervisors"]
    try:
        a = open_alert(sessions, outbox.routing, "B1")
        air = open_alert(sessions, outbox.routing, "S1", "pm25_high", details={"pm25": 80.5})
        with sessions.begin() as s:
            book = AlertBook(s, channels=outbox.routing)
            book.acknowledge(a, NOW + timedelta(minutes=3), "crew:7")
            book.clear(a, NOW + timedelta(minutes=40), "crew:7", "emptied")
        report = outbox.dispatch()
    finally:
        outbox.close()
    assert report.sent == {"mqtt": 4, "telegram:crew-wajo": 3, "telegram:city-watch": 4}
    wajo, city = bot.sent_to(WAJO), bot.sent_to(CITY)
    assert bot.sent_to(MAKASSAR) == [] and bot.sent_to(SUP) == []  # another kecamatan; reminders only
    assert wajo[0]["text"] == (f"MAJOR bin_full: new\ndevice B1 in Wajo\nsince 2026-03-02 10:00 WITA, seen 1x\n"
                               f"fillingLevel 0.90\nalert {a}")
    assert keyboard(wajo[0]) == [("On it", f"ack:{a}"), ("Emptied", f"clr:{a}")]
    assert wajo[1]["text"].startswith("MAJOR bin_full: someone is on it\n")
    assert "acknowledged by crew:7 at 2026-03-02 10:03 WITA" in wajo[1]["text"]
    assert keyboard(wajo[1]) == [("Emptied", f"clr:{a}")]  # already acknowledged: only the clear is left
    assert "cleared by crew:7 at 2026-03-02 10:40 WITA" in wajo[2]["text"] and wajo[2]["reply_markup"] is None
    # the city watch may not act: the same changes, no buttons; and the air alert the crew chat does not cover
    assert [m["text"] for m in city] == [wajo[0]["text"], f"MAJOR pm25_high: new\ndevice S1 in Wajo\n"
                                         f"since 2026-03-02 10:00 WITA, seen 1x\npm25 80.50\nalert {air}",
                                         wajo[1]["text"], wajo[2]["text"]]
    assert all(m["reply_markup"] is None for m in city)


def test_buttons_act_through_the_alert_book_and_are_refused_for_a_chat_that_may_not(
        settings: Settings, sessions: Any, bot: FakeTelegram) -> None:
    outbox = build_outbox(settings, sessions)
    updates = TelegramUpdates(bot_api(settings), sessions, CHATS, outbox.routing, outbox,
                              clock=lambda: NOW + timedelta(minutes=5))
    try:
        a = open_alert(sessions, outbox.routing, "B1")
        outbox.dispatch()
        q = [bot.press(CITY, f"ack:{a}"), bot.press(MAKASSAR, f"clr:{a}"), bot.press(-777, f"clr:{a}"),
             bot.press(WAJO, f"ack:{a}", user="budi")]
        first = updates.poll()
        q += [bot.press(WAJO, f"clr:{a}", user="sari"), bot.press(WAJO, f"clr:{a}", user="sari")]  # a double tap
        second = updates.poll()
        again = updates.poll()
        bot.say(NEW, "/chatid")
        told = updates.poll()
    finally:
        updates.api.close()
        outbox.close()
    assert [h.outcome for h in first] == ["refused", "refused", "refused", "acknowledged"]
    assert [h.outcome for h in second] == ["cleared", "rejected"] and again == []
    assert [(x["callback_query_id"], x["show_alert"]) for x in bot.answers] == [
        (q[0], True), (q[1], True), (q[2], True), (q[3], False), (q[4], False), (q[5], True)]
    assert bot.answers[0]["text"] == "This chat may not act on alerts."
    assert bot.answers[1]["text"] == f"This chat may not act on alert {a} (bin_full, Wajo)."
    assert bot.answers[3]["text"] == f"Alert {a}: you are on it."
    assert bot.answers[4]["text"] == f"Alert {a} cleared (emptied)."
    assert bot.answers[5]["text"] == f"alert {a} is already cleared"
    with sessions() as s:
        row = s.get(AlertRow, a)
        history = [(h.action, h.actor, h.details) for h in
                   s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id == a).order_by(AlertHistoryRow.id))]
    assert (row.status, row.ack_by, row.cleared_by) == ("cleared", "telegram:crew-wajo/budi", "telegram:crew-wajo/sari")
    assert history == [("opened", "system", {"fillingLevel": 0.9}),
                       ("acknowledged", "telegram:crew-wajo/budi", {}),
                       ("cleared", "telegram:crew-wajo/sari", {"reason": "emptied"})]
    # every linked chat heard of each change at once (the poller dispatches after acting)
    assert [m["text"].split("\n")[0] for m in bot.sent_to(WAJO)] == [
        "MAJOR bin_full: new", "MAJOR bin_full: someone is on it", "MAJOR bin_full: cleared"]
    assert len(bot.sent_to(CITY)) == 3
    assert told == [Handled(told[0].update_id, "chat_id", None, told[0].detail)]
    assert f"This chat's id is {NEW}. Link it in LORONG_NOTIFY__TELEGRAM_CHATS" in bot.sent_to(NEW)[0]["text"]


def test_429_and_5xx_are_retried_after_retry_after(sessions: Any, bot: FakeTelegram) -> None:
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    chat = CHATS[0]
    api = BotApi(TOKEN, bot.url, timeout_s=5.0, attempts=3, max_wait_s=30.0, sleep=sleep)
    box = Outbox(sessions, {chat.channel: TelegramChannel(api, chat, WITA)}, backoff_s=5.0,
                 router=NotifyRouter((), (chat,), "", "Asia/Makassar"))
    try:
        bot.failures[:] = [(429, 1), (502, 1)]
        open_alert(sessions, box.routing, "B1")
        assert box.dispatch().sent == {chat.channel: 1}
        sends = [t for t, method, _ in bot.calls if method == "sendMessage"]
        assert waits == [1.0, 1.0] and len(sends) == 3
        assert sends[1] - sends[0] >= 1.0 and sends[2] - sends[1] >= 1.0
        assert len(bot.sent_to(WAJO)) == 1

        # flood control longer than we wait in-process: the outbox waits at least retry_after
        bot.failures[:] = [(429, 60)]
        open_alert(sessions, box.routing, "B2")
        t0 = NOW + timedelta(hours=1)
        report = box.dispatch(now=t0)
        assert report.deferred == {chat.channel: "telegram sendMessage: 429 Too Many Requests: retry after 60"}
        head = next(r for r in rows(sessions) if r.sent_at is None)
        assert (head.attempts, head.next_attempt_at) == (1, t0 + timedelta(seconds=60))  # not the 5 s backoff
        assert waits == [1.0, 1.0]
        assert box.dispatch(now=t0 + timedelta(seconds=59)).sent == {}
        assert box.dispatch(now=t0 + timedelta(seconds=60)).sent == {chat.channel: 1}

        # 5xx on every try: pending, tried again later
        bot.failures[:] = [(500, 1)] * 3
        open_alert(sessions, box.routing, "B3")
        assert "500 Internal Server Error" in box.dispatch(now=t0 + timedelta(minutes=2)).deferred[chat.channel]
        assert waits == [1.0, 1.0, 1.0, 1.0]
        assert [r.failed_at for r in rows(sessions)][-1] is None

        # a chat the bot was removed from: refused for good, the row is failed
        bot.chats.discard(WAJO)
        report = box.dispatch(now=t0 + timedelta(minutes=10))
        assert report.refused == {chat.channel: 1}
        assert rows(sessions)[-1].last_error == "telegram sendMessage: 400 Bad Request: chat not found"
    finally:
        box.close()
    assert TOKEN not in " ".join(r.last_error or "" for r in rows(sessions))


def rows(sessions: Any) -> list[Row]:
    """Every outbox row, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).order_by(Row.id)))


def test_a_wrong_token_keeps_the_rows_pending(sessions: Any, bot: FakeTelegram) -> None:
    chat = CHATS[0]
    box = Outbox(sessions, {chat.channel: TelegramChannel(BotApi("1:wrong", bot.url), chat, WITA)},
                 router=NotifyRouter((), (chat,), "", "Asia/Makassar"))
    try:
        open_alert(sessions, box.routing, "B1")
        deferred = box.dispatch().deferred[chat.channel]
    finally:
        box.close()
    assert deferred == ("telegram sendMessage: 401 Unauthorized (check LORONG_NOTIFY__TELEGRAM_TOKEN and "
                        "TELEGRAM_API_URL)")
    assert rows(sessions)[0].failed_at is None
