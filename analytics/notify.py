"""Notifiers built from settings: MQTT (always), webhook (when ``analytics.webhook_url`` is set),
and the InfluxDB ``alert_event`` log (one point per change, for Grafana annotations)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from analytics.alerts import AlertChange, Notifier
from analytics.notify_mqtt import MqttNotifier
from analytics.notify_webhook import WebhookNotifier
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


def build_notifiers(settings: Settings,
                    influx: InfluxClient | None = None) -> tuple[list[Notifier], Callable[[], None]]:
    """The notifiers the settings ask for, and a function that closes them.

    MQTT goes to ``settings.mqtt`` (the ingest broker) under a client id unique to this call
    (:func:`analytics.notify_mqtt.publisher_client_id`), so ``run-once`` and the scheduler can
    publish side by side; a broker that does not answer is logged and skipped (alerts still reach
    the database and the API).
    """
    notifiers: list[Notifier] = []
    closers: list[Callable[[], None]] = []
    m = settings.mqtt
    try:
        mq = MqttNotifier(m.host, m.port, username=m.username,
                          password=m.password.get_secret_value() if m.password else None)
        notifiers.append(mq)
        closers.append(mq.close)
    except ConnectionError as exc:
        log.error("alerts will not be published on MQTT: %s", exc)
    if settings.analytics.webhook_url:
        wh = WebhookNotifier(settings.analytics.webhook_url)
        notifiers.append(wh)
        closers.append(wh.close)
    if influx is not None:
        notifiers.append(InfluxAlertLog(influx))

    def close() -> None:
        for c in closers:
            c()

    return notifiers, close
