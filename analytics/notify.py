"""Notification wiring from settings.

Alert changes reach people through the outbox (:mod:`analytics.outbox`): channel ``mqtt`` always
(the ingest broker, ``lorong/alerts/...``, as the alert publisher's account), channel ``webhook``
when ``analytics.webhook_url`` is set, and one channel ``telegram:<name>`` per linked chat when
``notify.telegram_token`` is set (:mod:`analytics.notify_telegram`). :class:`NotifyRouter` decides
which channels hear of each change: MQTT and the webhook every change, a crew chat the changes of
its alerts (quiet hours hold non-critical ones), a supervisor chat the reminders of critical alerts
nobody acknowledged (:mod:`analytics.escalation`).
The InfluxDB ``alert_event`` log (one point per change, for Grafana annotations) stays a best-effort
notifier called once after the commit: a point lost while InfluxDB is down costs an annotation,
not a crew's message, and the same history is in ``alert_history``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertChange, Notifier
from analytics.notify_mqtt import MqttChannel
from analytics.notify_telegram import BotApi, TelegramChannel, TelegramUpdates
from analytics.notify_webhook import WebhookChannel
from analytics.outbox import Channel, Delivery, Outbox
from analytics.telegram_text import registry_places
from devices.credentials import ALERTS_ENV, read_env_file
from lorong.core import schema
from lorong.core.errors import ConfigError
from lorong.core.model import to_ms, utcnow
from lorong.core.settings import Settings, TelegramChat
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import CityRow

log = logging.getLogger(__name__)


class InfluxAlertLog:
    """Writes each alert change as an ``alert_event`` point (:mod:`lorong.core.schema`): tags device_id,
    kecamatan, city, type, severity; fields status, action, alert_id; time = the change's time."""

    def __init__(self, influx: InfluxClient) -> None:
        self.influx = influx

    def __call__(self, change: AlertChange) -> None:
        """Write one point.

        Raises:
            StoreUnavailable, StoreRejected: the write failed.
        """
        a = change.alert
        at = datetime.fromisoformat(a["updated_at"]) if a.get("updated_at") else utcnow()
        self.influx.write_lines([line(
            schema.MEASUREMENT_ALERT,
            {schema.TAG_DEVICE: str(a["device_id"]), schema.TAG_KECAMATAN: str(a.get("kecamatan") or ""),
             schema.TAG_TYPE: str(a["type"]), schema.TAG_SEVERITY: str(a["severity"]),
             schema.TAG_CITY: str(a.get("city_id") or "")},
            {"status": str(a["status"]), "action": change.action, "alert_id": int(change.alert_id)}, to_ms(at))])


def quiet_until(now: datetime, quiet_hours: str, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet hours ``now`` falls in (tz-aware UTC), or ``None`` outside them.

    Args:
        now: tz-aware.
        quiet_hours: ``HH:MM-HH:MM`` local time (the window may span midnight: ``22:00-06:00``),
            start included, end excluded; empty: never quiet.
        tz: the city's zone.
    """
    if not quiet_hours:
        return None
    start, end = (time.fromisoformat(t) for t in quiet_hours.split("-"))
    local = now.astimezone(tz)
    t, day = local.time().replace(tzinfo=None), local.date()
    if start < end:
        inside, end_day = start <= t < end, day
    else:  # spans midnight
        inside, end_day = (t >= start or t < end), (day + timedelta(days=1) if t >= start else day)
    if not inside:
        return None
    return datetime.combine(end_day, end, tz).astimezone(now.tzinfo or tz)


@dataclass(frozen=True)
class NotifyRouter:
    """Chooses the outbox channels of each alert change (an :class:`analytics.outbox.Router`).

    - ``broadcast`` channels (``mqtt``, ``webhook``) get every change, at once;
    - a ``crew`` chat gets the changes of the alerts it covers (:meth:`TelegramChat.covers`), but
      not the reminders; during ``quiet_hours`` the changes of non-critical alerts are held until
      the quiet hours end;
    - a ``supervisor`` chat gets the reminders (action ``reminder``) of the alerts it covers.

    A chat with a ``city`` gets that city's alerts only (:meth:`TelegramChat.covers`).

    Attributes:
        broadcast: channel names.
        chats: the linked Telegram chats (empty when Telegram is off).
        quiet_hours: ``HH:MM-HH:MM`` or empty (:func:`quiet_until`), local time of the alert's city.
        tz: the IANA zone name of alerts of a city not in ``zones`` (the deployment's).
        zones: ``(city id, IANA zone)`` of the registry's cities (:func:`city_zones`).
    """

    broadcast: tuple[str, ...]
    chats: tuple[TelegramChat, ...] = ()
    quiet_hours: str = ""
    tz: str = "Asia/Makassar"
    zones: tuple[tuple[str, str], ...] = ()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _zones: dict[str, ZoneInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.tz))
        object.__setattr__(self, "_zones", {city: ZoneInfo(tz) for city, tz in self.zones})

    @property
    def names(self) -> list[str]:
        """Every channel: the broadcast ones, then one per chat."""
        return [*self.broadcast, *(c.channel for c in self.chats)]

    def __call__(self, action: str, alert: Mapping[str, Any], now: datetime) -> Sequence[Delivery]:
        """The deliveries of one change (see the class)."""
        out = [Delivery(c) for c in self.broadcast]
        wanted = "supervisor" if action == "reminder" else "crew"
        zone = self._zones.get(str(alert.get("city_id") or ""), self._zone)
        held = None if alert.get("severity") == "critical" else quiet_until(now, self.quiet_hours, zone)
        out += [Delivery(c.channel, held) for c in self.chats if c.role == wanted and c.covers(alert)]
        return out


def outbox_channels(settings: Settings, zones: Mapping[str, str] | None = None) -> NotifyRouter:
    """The router of the channels the settings ask for: ``mqtt``; ``webhook`` when
    ``analytics.webhook_url`` is set; a ``telegram:<name>`` channel per linked chat when
    ``notify.telegram_token`` is set. A process that changes alerts but does not send (the API)
    writes rows for these; the scheduler sends them. ``zones`` (:func:`city_zones`) puts each
    city's quiet hours in its own time zone."""
    n = settings.notify
    return NotifyRouter(("mqtt", "webhook") if settings.analytics.webhook_url else ("mqtt",),
                        tuple(n.telegram_chats) if n.telegram_token else (), n.quiet_hours,
                        settings.analytics.timezone, tuple(sorted((zones or {}).items())))


def city_zones(session: Session) -> dict[str, str]:
    """``{city id: IANA zone}`` of the registry's cities."""
    return {c.id: c.timezone for c in session.scalars(select(CityRow))}


def check_chat_cities(chats: Sequence[TelegramChat], zones: Mapping[str, str]) -> None:
    """Refuse linked chats naming a city the registry does not have (their alerts would never come).

    Raises:
        ConfigError: names the chat, its city and the registered ones.
    """
    for chat in chats:
        if chat.city is not None and chat.city not in zones:
            raise ConfigError(f"LORONG_NOTIFY__TELEGRAM_CHATS: chat {chat.name} names city {chat.city!r}, which is "
                              f"not registered (known: {', '.join(sorted(zones)) or 'none'}; `lorong cities list`)")


def publisher_account(settings: Settings) -> tuple[str | None, str | None]:
    """The alert publisher's broker account: ``notify.mqtt_username``/``mqtt_password``; else the one
    ``lorong devices credentials export`` keeps in ``<var_dir>/mosquitto/alerts.env``; else the
    ingest account (``mqtt.username``), which is all an anonymous broker needs.

    Raises:
        ConfigError: ``alerts.env`` exists but lacks a variable.
    """
    n, m = settings.notify, settings.mqtt
    if n.mqtt_username:
        return n.mqtt_username, n.mqtt_password.get_secret_value() if n.mqtt_password else None
    env = settings.var_dir / "mosquitto" / ALERTS_ENV
    if env.exists():
        return read_env_file(env, "LORONG_NOTIFY__MQTT_USERNAME", "LORONG_NOTIFY__MQTT_PASSWORD")
    return m.username, m.password.get_secret_value() if m.password else None


def bot_api(settings: Settings) -> BotApi:
    """The Telegram Bot API client of the settings.

    Raises:
        ConfigError: ``notify.telegram_token`` is not set.
    """
    n = settings.notify
    if n.telegram_token is None:
        raise ConfigError("Telegram is off: set LORONG_NOTIFY__TELEGRAM_TOKEN to the bot's token from @BotFather")
    return BotApi(n.telegram_token.get_secret_value(), n.telegram_api_url, n.telegram_timeout_s,
                  n.telegram_attempts, n.telegram_max_wait_s)


def build_outbox(settings: Settings, sessions: sessionmaker[Session]) -> Outbox:
    """The outbox with a sender per channel of :func:`outbox_channels`; close it with :meth:`Outbox.close`.

    MQTT goes to ``settings.mqtt`` (the ingest broker) as :func:`publisher_account`, under a client
    id unique to each connection (:func:`analytics.notify_mqtt.publisher_client_id`), so
    ``run-once`` and the scheduler can publish side by side; it connects on the first send, so a
    broker that is down only holds the rows back. The Telegram chats share one Bot API client and
    read each device's place from the registry in ``sessions``.

    Raises:
        ConfigError: see :func:`publisher_account`.
    """
    m, a = settings.mqtt, settings.analytics
    with sessions() as session:
        zones = city_zones(session)
    router = outbox_channels(settings, zones)
    check_chat_cities(router.chats, zones)
    user, password = publisher_account(settings)
    channels: dict[str, Channel] = {"mqtt": MqttChannel(m.host, m.port, username=user, password=password,
                                                        topics=settings.notify.mqtt_topics)}
    if a.webhook_url:
        channels["webhook"] = WebhookChannel(
            a.webhook_url, secret=a.webhook_secret.get_secret_value() if a.webhook_secret else None)
    if router.chats:
        api, locate = bot_api(settings), registry_places(sessions)
        for chat in router.chats:  # message times in the chat's city's zone
            channels[chat.channel] = TelegramChannel(api, chat, ZoneInfo(zones.get(chat.city or "", a.timezone)),
                                                     locate)
    return Outbox(sessions, channels, a.outbox_backoff_s, a.outbox_backoff_max_s, a.outbox_retention_days,
                  router=router)


def build_telegram_updates(settings: Settings, sessions: sessionmaker[Session], outbox: Outbox | None = None,
                           influx: InfluxClient | None = None) -> TelegramUpdates:
    """The reader of the bot's button presses (run it with :meth:`TelegramUpdates.run`); with
    ``influx``, each change a button makes is logged as an ``alert_event`` point (:class:`InfluxAlertLog`),
    as the API's actions are.

    Raises:
        ConfigError: ``notify.telegram_token`` is not set.
    """
    with sessions() as session:
        zones = city_zones(session)
    return TelegramUpdates(bot_api(settings), sessions, settings.notify.telegram_chats,
                           outbox_channels(settings, zones), outbox, notifiers=build_notifiers(settings, influx)[0])


def start_telegram_updates(settings: Settings, sessions: sessionmaker[Session], outbox: Outbox | None,
                           stop: threading.Event, influx: InfluxClient | None = None) -> Callable[[], None]:
    """Read the linked chats' button presses (and ``/chatid``) in a daemon thread until ``stop`` is set,
    when Telegram is on (``notify.telegram_token`` set); ``lorong analytics schedule`` and ``lorong demo``
    run it. With ``influx`` the changes are logged as ``alert_event`` points (:func:`build_telegram_updates`).

    Returns:
        a function that waits for the thread to end after ``stop`` is set (bounded by one long poll
        and the request timeout); it does nothing when Telegram is off.
    """
    n = settings.notify
    if n.telegram_token is None:
        return lambda: None
    updates = build_telegram_updates(settings, sessions, outbox, influx)
    poller = threading.Thread(target=updates.run, args=(stop, n.telegram_poll_s), name="telegram", daemon=True)
    poller.start()
    log.info("telegram: reading button presses of %d linked chats", len(n.telegram_chats))

    def join() -> None:
        poller.join(timeout=n.telegram_poll_s + n.telegram_timeout_s + 5)
        updates.api.close()

    return join


def build_notifiers(settings: Settings,
                    influx: InfluxClient | None = None) -> tuple[list[Notifier], Callable[[], None]]:
    """The best-effort notifiers (the InfluxDB ``alert_event`` log when ``influx`` is given) and a
    function that closes them. MQTT and the webhook are outbox channels (:func:`build_outbox`)."""
    notifiers: list[Notifier] = [InfluxAlertLog(influx)] if influx is not None else []
    return notifiers, lambda: None
