"""Notification wiring from settings.

Alert changes reach people through the outbox (:mod:`analytics.outbox`): channel ``mqtt`` always
(the ingest broker, ``lorong/alerts/...``), channel ``webhook`` when ``analytics.webhook_url`` is set.
The InfluxDB ``alert_event`` log (one point per change, for Grafana annotations) stays a best-effort
notifier called once after the commit: a point lost while InfluxDB is down costs an annotation,
not a crew's message, and the same history is in ``alert_history``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertChange, Notifier
from analytics.notify_mqtt import MqttChannel
from analytics.notify_webhook import WebhookChannel
from analytics.outbox import Channel, Outbox
from core import schema
from core.model import to_ms, utcnow
from core.settings import Settings
from storage.influx import InfluxClient, line

log = logging.getLogger(__name__)


class InfluxAlertLog:
    """Writes each alert change as an ``alert_event`` point (:mod:`core.schema`): tags device_id,
    kecamatan, type, severity; fields status, action, alert_id; time = the change's time."""

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
             schema.TAG_TYPE: str(a["type"]), schema.TAG_SEVERITY: str(a["severity"])},
            {"status": str(a["status"]), "action": change.action, "alert_id": int(change.alert_id)}, to_ms(at))])


def outbox_channels(settings: Settings) -> list[str]:
    """Channel names the settings ask for: ``mqtt``, and ``webhook`` when ``analytics.webhook_url`` is
    set. A process that changes alerts but does not send (the API) writes rows for these; the
    scheduler sends them."""
    return ["mqtt", "webhook"] if settings.analytics.webhook_url else ["mqtt"]


def build_outbox(settings: Settings, sessions: sessionmaker[Session]) -> Outbox:
    """The outbox with a sender per :func:`outbox_channels` entry; close it with :meth:`Outbox.close`.

    MQTT goes to ``settings.mqtt`` (the ingest broker) under a client id unique to each connection
    (:func:`analytics.notify_mqtt.publisher_client_id`), so ``run-once`` and the scheduler can
    publish side by side; it connects on the first send, so a broker that is down only holds the
    rows back.
    """
    m, a = settings.mqtt, settings.analytics
    channels: dict[str, Channel] = {
        "mqtt": MqttChannel(m.host, m.port, username=m.username,
                            password=m.password.get_secret_value() if m.password else None)}
    if a.webhook_url:
        channels["webhook"] = WebhookChannel(a.webhook_url)
    return Outbox(sessions, channels, a.outbox_backoff_s, a.outbox_backoff_max_s, a.outbox_retention_days)


def build_notifiers(settings: Settings,
                    influx: InfluxClient | None = None) -> tuple[list[Notifier], Callable[[], None]]:
    """The best-effort notifiers (the InfluxDB ``alert_event`` log when ``influx`` is given) and a
    function that closes them. MQTT and the webhook are outbox channels (:func:`build_outbox`)."""
    notifiers: list[Notifier] = [InfluxAlertLog(influx)] if influx is not None else []
    return notifiers, lambda: None
