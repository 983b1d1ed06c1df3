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
from analytics.notify import NotifyRouter, bot_api, build_outbox, build_telegram_updates
from analytics.notify_telegram import BotApi, Handled, TelegramChannel, TelegramUpdates, buttons
from analytics.outbox import Outbox
from analytics.telegram_text import message_text
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import NotifySettings, Settings, TelegramChat
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertHistoryRow, AlertRow
from lorong.storage.tables import NotificationOutboxRow as Row
from tests.analytics.fake_telegram import TOKEN, FakeTelegram
from tests.analytics.test_scenarios import NOW

pytestmark = pytest.mark.integration

WAJO, MAKASSAR, CITY, SUP, NEW = -1001, -1002, -1003, -1004, -1005
CHATS = [
    TelegramChat(name="crew-wajo", chat_id=WAJO, kecamatan=["Wajo"], types=["bin_full", "bin_full_soon"],
                 can_act=True),
    TelegramChat(name="crew-makassar", chat_id=MAKASSAR, kecamatan=["Makassar"], can_act=True),
    TelegramChat(name="city-watch", chat_id=CITY, language="en"),
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
    # the crew chat speaks Bahasa Indonesia (the default), with the catalogue's title and what to do
    assert wajo[0]["text"] == ("TINGGI · Tong penuh: baru\nB1 · Wajo\n"
                               "Kosongkan tong ini hari ini; kritis berarti sampah sudah hampir meluap.\n"
                               f"sejak 2026-03-02 10:00 WITA, terlihat 1x\nfillingLevel 0.90\nperingatan {a}")
    assert keyboard(wajo[0]) == [("Saya tangani", f"ack:{a}"), ("Sudah dikosongkan", f"clr:{a}")]
    assert wajo[1]["text"].startswith("TINGGI · Tong penuh: sedang ditangani\n")
    assert "ditangani oleh crew:7 pukul 2026-03-02 10:03 WITA" in wajo[1]["text"]
    assert keyboard(wajo[1]) == [("Sudah dikosongkan", f"clr:{a}")]  # already acknowledged: only the clear is left
    assert "diselesaikan oleh crew:7 pukul 2026-03-02 10:40 WITA" in wajo[2]["text"]
    assert wajo[2]["reply_markup"] is None
    # the city watch reads English and may not act: no buttons; and the air alert the crew chat does not cover
    assert [m["text"] for m in city] == [
        "HIGH · Bin full: new\nB1 · Wajo\nEmpty this bin today; critical means it is about to overflow.\n"
        f"since 2026-03-02 10:00 WITA, seen 1x\nfillingLevel 0.90\nalert {a}",
        "HIGH · High PM2.5: new\nS1 · Wajo\nIssue a health advisory: wear masks, spend less time outdoors.\n"
        f"since 2026-03-02 10:00 WITA, seen 1x\npm25 80.50\nalert {air}",
        "HIGH · Bin full: someone is on it\nB1 · Wajo\nEmpty this bin today; critical means it is about to "
        f"overflow.\nsince 2026-03-02 10:00 WITA, seen 1x\nfillingLevel 0.90\n"
        f"acknowledged by crew:7 at 2026-03-02 10:03 WITA\nalert {a}",
        "HIGH · Bin full: cleared\nB1 · Wajo\nEmpty this bin today; critical means it is about to "
        f"overflow.\nsince 2026-03-02 10:00 WITA, seen 1x\nfillingLevel 0.90\n"
        f"cleared by crew:7 at 2026-03-02 10:40 WITA\nalert {a}"]
    assert all(m["reply_markup"] is None for m in city)


def test_messages_name_the_place_and_link_the_map(settings: Settings, sessions: Any, bot: FakeTelegram) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B7", kind="bin", kecamatan="Wajo", lat=-5.1312, lon=119.4105, depth_mm=1000,
                               blind_zone_mm=150, street="Jl. Somba Opu", kelurahan="Melayu Baru",
                               landmark="depan Masjid Raya"))
    outbox = build_outbox(settings, sessions)
    try:
        a = open_alert(sessions, outbox.routing, "B7", severity="critical")
        city_wide = open_alert(sessions, outbox.routing, "city", "pm25_episode", "", details={"stations": 5})
        outbox.dispatch()
    finally:
        outbox.close()
    link = "https://www.openstreetmap.org/?mlat=-5.1312&mlon=119.4105#map=18/-5.1312/119.4105"
    assert bot.sent_to(WAJO)[0]["text"] == (
        "KRITIS · Tong penuh: baru\nB7 · Jl. Somba Opu, Melayu Baru, Wajo (depan Masjid Raya)\n"
        "Kosongkan tong ini hari ini; kritis berarti sampah sudah hampir meluap.\n"
        f"sejak 2026-03-02 10:00 WITA, terlihat 1x\nfillingLevel 0.90\n{link}\nperingatan {a}")
    city = [m["text"] for m in bot.sent_to(CITY)]
    assert city[0].split("\n")[:2] == ["CRITICAL · Bin full: new",
                                       "B7 · Jl. Somba Opu, Melayu Baru, Wajo (depan Masjid Raya)"]
    assert link in city[0].split("\n")
    # a city-wide alert has no place and no map link
    assert city[1] == ("HIGH · City-wide haze: new\ncity · no kecamatan\n"
                       "Many stations rise together: coordinate a city-wide advisory.\n"
                       f"since 2026-03-02 10:00 WITA, seen 1x\nstations 5\nalert {city_wide}")


def test_reminder_words_in_both_languages() -> None:
    alert = {"id": 9, "type": "fire", "severity": "critical", "device_id": "B1", "kecamatan": "Wajo",
             "started_at": "2026-03-02T02:00:00+00:00", "count": 2, "details": {},
             "reminder": {"unacknowledged_min": 15, "reminder": 1}}
    assert message_text("reminder", alert, WITA, "id") == (
        "KRITIS · Api di tong: BELUM DITANGANI\nB1 · Wajo\n"
        "Jauhi tong, jangan buka tutupnya, telepon pemadam kebakaran 113.\n"
        "sejak 2026-03-02 10:00 WITA, terlihat 2x\nbelum ditangani selama 15 menit (pengingat ke-1)\nperingatan 9")
    assert message_text("reminder", alert, WITA, "en").split("\n")[4] == "not acknowledged for 15 min (reminder 1)"
    assert buttons({**alert, "status": "active"}, CHATS[3]) == {"inline_keyboard": [[
        {"text": "Saya tangani", "callback_data": "ack:9"}, {"text": "Selesai", "callback_data": "clr:9"}]]}


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
    assert bot.answers[0]["text"] == "This chat may not act on alerts."  # the city watch reads English
    assert bot.answers[1]["text"] == f"Chat ini tidak boleh menangani peringatan {a} (bin_full, Wajo)."
    assert bot.answers[2]["text"] == "Chat ini tidak boleh menangani peringatan."  # not linked: Bahasa
    assert bot.answers[3]["text"] == f"Peringatan {a}: Anda menanganinya."
    assert bot.answers[4]["text"] == f"Peringatan {a} selesai (Sudah dikosongkan)."
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
        "TINGGI · Tong penuh: baru", "TINGGI · Tong penuh: sedang ditangani", "TINGGI · Tong penuh: selesai"]
    assert len(bot.sent_to(CITY)) == 3
    assert told == [Handled(told[0].update_id, "chat_id", None, told[0].detail)]
    assert f"This chat's id is {NEW}. Link it in LORONG_NOTIFY__TELEGRAM_CHATS" in bot.sent_to(NEW)[0]["text"]


def test_button_actions_write_the_alert_event_annotation(settings: Settings, sessions: Any, bot: FakeTelegram,
                                                        influx: InfluxClient) -> None:
    outbox = build_outbox(settings, sessions)
    updates = build_telegram_updates(settings, sessions, outbox, influx)  # as `analytics schedule` and `demo` do
    try:
        a = open_alert(sessions, outbox.routing, "B1")
        bot.press(WAJO, f"ack:{a}", user="budi")
        bot.press(CITY, f"clr:{a}")  # refused: no change, no point
        bot.press(WAJO, f"clr:{a}", user="sari")
        assert [h.outcome for h in updates.poll()] == ["acknowledged", "refused", "cleared"]
    finally:
        updates.api.close()
        outbox.close()
    with sessions() as s:
        row = s.get(AlertRow, a)
        times = [to_ms(t) for t in (row.ack_at, row.cleared_at)]
    points = influx.records(f'SELECT * FROM "{schema.MEASUREMENT_ALERT}"')
    assert points == [
        {"time": times[0], "action": "acknowledged", "alert_id": a, "device_id": "B1", "kecamatan": "Wajo",
         "severity": "major", "status": "active", "type": "bin_full"},
        {"time": times[1], "action": "cleared", "alert_id": a, "device_id": "B1", "kecamatan": "Wajo",
         "severity": "major", "status": "cleared", "type": "bin_full"}]


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
