"""Alert notifications per city (issue 15): a Telegram chat linked to a city gets that city's alerts
only (in its time zone) and its buttons act on them only, against the local Bot API server
(``tests/analytics/fake_telegram.py``); on MQTT each alert goes to its city's topic
``lorong/<city>/alerts/<kecamatan>/<type>/<device>`` and, by default, to the topic of before cities,
on a real Mosquitto."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook
from analytics.notify import NotifyRouter, bot_api, build_outbox
from analytics.notify_mqtt import topics_for
from analytics.notify_telegram import TelegramUpdates
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core.errors import ConfigError
from lorong.core.settings import NotifySettings, Settings, TelegramChat
from lorong.storage import stack
from lorong.storage.tables import AlertHistoryRow, AlertRow
from tests.analytics.fake_telegram import TOKEN, FakeTelegram
from tests.analytics.test_scenarios import NOW
from tests.support import Subscriber

pytestmark = pytest.mark.integration

MKS_CHAT, JKT_CHAT, PROVINCE = -2001, -2002, -2003
CHATS = [TelegramChat(name="crew-mks", chat_id=MKS_CHAT, city="makassar", can_act=True),
         TelegramChat(name="crew-jkt", chat_id=JKT_CHAT, city="jakarta", can_act=True, language="en"),
         TelegramChat(name="province", chat_id=PROVINCE, language="en")]


@pytest.fixture
def two_cities(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Makassar (the migrated registry's city) and Jakarta, a bin in each."""
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta"))
        add_device(s, DeviceIn(id="MKS-BIN-1", kind="bin", depth_mm=1000, city_id="makassar", kecamatan="Wajo"))
        add_device(s, DeviceIn(id="JKT-BIN-1", kind="bin", depth_mm=1000, city_id="jakarta", kecamatan="Gambir"))
    return sessions


def open_alerts(sessions: sessionmaker[Session], routing: Any) -> dict[str, int]:
    """A bin_full alert for each city's bin; ``{device id: alert id}``."""
    with sessions.begin() as s:
        book = AlertBook(s, channels=routing, clock=lambda: NOW)
        return {dev: book.raise_(dev, "bin_full", "major", NOW, {"fillingLevel": 0.9}, kec)[0].id
                for dev, kec in (("MKS-BIN-1", "Wajo"), ("JKT-BIN-1", "Gambir"))}


@pytest.fixture
def bot() -> Iterator[FakeTelegram]:
    """The fake Bot API; the bot is a member of the three chats."""
    fake = FakeTelegram(chats={MKS_CHAT, JKT_CHAT, PROVINCE}).start()
    yield fake
    fake.stop()


def telegram_settings(make_settings: Callable[..., Settings], bot: FakeTelegram, port: int,
                      chats: list[TelegramChat]) -> Settings:
    """Settings with ``chats`` linked on the fake Bot API, no quiet hours."""
    return make_settings(mqtt_port=port, notify=NotifySettings(
        telegram_token=TOKEN, telegram_api_url=bot.url, telegram_chats=chats, quiet_hours=""))


def test_a_city_chat_gets_and_acts_on_its_city_only(make_settings: Callable[..., Settings], bot: FakeTelegram,
                                                    mosquitto: stack.Service,
                                                    two_cities: sessionmaker[Session]) -> None:
    settings = telegram_settings(make_settings, bot, mosquitto.port, CHATS)
    outbox = build_outbox(settings, two_cities)
    updates = TelegramUpdates(bot_api(settings), two_cities, CHATS, outbox.routing, outbox,
                              clock=lambda: NOW + timedelta(minutes=5))
    try:
        ids = open_alerts(two_cities, outbox.routing)
        report = outbox.dispatch()
        # the Makassar crew presses "On it" under Jakarta's alert (a forwarded message), then its own
        bot.press(MKS_CHAT, f"ack:{ids['JKT-BIN-1']}")
        bot.press(MKS_CHAT, f"ack:{ids['MKS-BIN-1']}")
        handled = updates.poll()
    finally:
        updates.api.close()
        outbox.close()
    assert report.sent == {"mqtt": 2, "telegram:crew-mks": 1, "telegram:crew-jkt": 1, "telegram:province": 2}
    mks, jkt = bot.sent_to(MKS_CHAT), bot.sent_to(JKT_CHAT)
    assert [m["text"].split("\n")[1] for m in mks] == ["MKS-BIN-1 · Wajo", "MKS-BIN-1 · Wajo"]  # new, then acked
    assert [m["text"].split("\n")[1] for m in jkt] == ["JKT-BIN-1 · Gambir"]
    # each city's chat reads its own clock: 02:00 UTC is 10:00 WITA in Makassar, 09:00 WIB in Jakarta
    assert "sejak 2026-03-02 10:00 WITA" in mks[0]["text"]
    assert "since 2026-03-02 09:00 WIB" in jkt[0]["text"]
    # a chat without a city hears of every city (a provincial office)
    assert sorted(m["text"].split("\n")[1] for m in bot.sent_to(PROVINCE)[:2]) == [
        "JKT-BIN-1 · Gambir", "MKS-BIN-1 · Wajo"]
    assert [(h.outcome, h.alert_id) for h in handled] == [("refused", ids["JKT-BIN-1"]),
                                                           ("acknowledged", ids["MKS-BIN-1"])]
    with two_cities() as s:
        assert s.get(AlertRow, ids["JKT-BIN-1"]).ack_by is None
        assert s.get(AlertRow, ids["MKS-BIN-1"]).ack_by == "telegram:crew-mks/budi"


def test_a_chat_naming_an_unregistered_city_is_one_config_error(
        make_settings: Callable[..., Settings], bot: FakeTelegram, mosquitto: stack.Service,
        two_cities: sessionmaker[Session]) -> None:
    chats = [TelegramChat(name="crew-sby", chat_id=MKS_CHAT, city="surabaya")]
    with pytest.raises(ConfigError, match=r"chat crew-sby names city 'surabaya', which is not registered "
                                          r"\(known: jakarta, makassar"):
        build_outbox(telegram_settings(make_settings, bot, mosquitto.port, chats), two_cities)


def notification_ids(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int]]:
    """``(topic, notification_id)`` of each message, sorted."""
    return sorted((t, int(p["notification_id"])) for t, p in messages)


@pytest.mark.parametrize("mode", ["both", "city"])
def test_alerts_are_published_on_their_citys_topic(make_settings: Callable[..., Settings], mosquitto: stack.Service,
                                                   two_cities: sessionmaker[Session], mode: str) -> None:
    jakarta = Subscriber(mosquitto.port, topic="lorong/jakarta/alerts/#")  # a consumer of one city
    legacy = Subscriber(mosquitto.port, topic="lorong/alerts/#")  # a consumer from before cities
    settings = make_settings(mqtt_port=mosquitto.port, notify=NotifySettings(mqtt_topics=mode))
    outbox = build_outbox(settings, two_cities)
    try:
        ids = open_alerts(two_cities, outbox.routing)
        report = outbox.dispatch()
        got_jkt = notification_ids(jakarta.settle(1))
        got_legacy = notification_ids(legacy.settle(2 if mode == "both" else 0,
                                                    timeout_s=5.0 if mode == "both" else 0.5))
    finally:
        outbox.close()
        jakarta.close()
        legacy.close()
    assert report.sent == {"mqtt": 2}
    with two_cities() as s:
        nid = {h.alert_id: h.id for h in s.query(AlertHistoryRow)}
    assert got_jkt == [("lorong/jakarta/alerts/Gambir/bin_full/JKT-BIN-1", nid[ids["JKT-BIN-1"]])]
    assert got_legacy == ([] if mode == "city" else sorted([
        ("lorong/alerts/Gambir/bin_full/JKT-BIN-1", nid[ids["JKT-BIN-1"]]),
        ("lorong/alerts/Wajo/bin_full/MKS-BIN-1", nid[ids["MKS-BIN-1"]])]))


def test_topics_of_an_alert() -> None:
    alert = {"city_id": "jakarta", "kecamatan": "Tanah Abang", "type": "fire", "device_id": "JKT-BIN-7"}
    assert topics_for(alert) == ["lorong/jakarta/alerts/Tanah Abang/fire/JKT-BIN-7",
                                 "lorong/alerts/Tanah Abang/fire/JKT-BIN-7"]
    assert topics_for(alert, "city") == ["lorong/jakarta/alerts/Tanah Abang/fire/JKT-BIN-7"]
    assert topics_for(alert, "legacy") == ["lorong/alerts/Tanah Abang/fire/JKT-BIN-7"]
    # an alert of no city (a device the registry does not know) keeps the topic of before cities
    assert topics_for({**alert, "city_id": None}, "city") == ["lorong/alerts/Tanah Abang/fire/JKT-BIN-7"]
    with pytest.raises(ValueError, match="one of both, city, legacy"):
        topics_for(alert, "all")


def test_quiet_hours_are_each_citys_local_time() -> None:
    # 14:30 UTC is 22:30 WITA in Makassar (quiet since 22:00) and 21:30 WIB in Jakarta (not yet)
    now = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    router = NotifyRouter(("mqtt",), tuple(CHATS), "22:00-06:00", "Asia/Makassar",
                          (("jakarta", "Asia/Jakarta"), ("makassar", "Asia/Makassar")))
    alert = {"type": "bin_full", "severity": "major", "kecamatan": "K"}
    mks = router("opened", {**alert, "city_id": "makassar"}, now)
    jkt = router("opened", {**alert, "city_id": "jakarta"}, now)
    assert [(d.channel, d.not_before) for d in mks] == [
        ("mqtt", None), ("telegram:crew-mks", datetime(2026, 3, 2, 22, 0, tzinfo=UTC)),  # 06:00 WITA
        ("telegram:province", datetime(2026, 3, 2, 22, 0, tzinfo=UTC))]
    assert [(d.channel, d.not_before) for d in jkt] == [
        ("mqtt", None), ("telegram:crew-jkt", None), ("telegram:province", None)]
