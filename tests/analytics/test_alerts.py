"""Alert lifecycle (ThingsBoard model) and its notifiers: MQTT on the real broker, a webhook on a
real local HTTP server (retries), the InfluxDB ``alert_event`` log, and the scheduler loop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from analytics.alerts import AlertBook, AlertChange, AlertNotFound, AlertStateError
from analytics.notify import InfluxAlertLog, build_outbox
from analytics.notify_mqtt import MqttChannel, MqttNotifier, alert_topic, topic_level
from analytics.notify_webhook import RetryableStatus, WebhookDown, WebhookNotifier
from analytics.outbox import OutboxMessage, notification_payload
from analytics.scheduler import Scheduler
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertHistoryRow, AlertRow
from tests.support import Subscriber

T = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def test_lifecycle_states_history_and_errors(sessions: Any) -> None:
    changes: list[AlertChange] = []
    with sessions() as s:
        book = AlertBook(s, [changes.append])
        row, what = book.raise_("B1", "bin_full", "major", T, {"fillingLevel": 0.85}, "Wajo")
        assert what == "opened" and (row.status, row.acknowledged, row.count) == ("active", False, 1)
        assert book.raise_("B1", "bin_full", "major", T + timedelta(minutes=1), {"fillingLevel": 0.87})[1] == "extended"
        assert book.raise_("B1", "bin_full", "critical", T + timedelta(minutes=2), {"fillingLevel": 0.96})[1] \
            == "escalated"
        book.acknowledge(row.id, T + timedelta(minutes=3), "crew-7")
        with pytest.raises(AlertStateError):
            book.acknowledge(row.id, T + timedelta(minutes=4), "crew-7")
        book.clear(row.id, T + timedelta(minutes=5), "system", "emptied")
        with pytest.raises(AlertStateError):
            book.clear(row.id, T + timedelta(minutes=6))
        with pytest.raises(AlertNotFound):
            book.get(999)
        with pytest.raises(ValueError, match="severity"):
            book.raise_("B1", "bin_full", "urgent", T, {})
        # cleared and acknowledged: the fourth ThingsBoard state; a new occurrence is a new alert
        again, what = book.raise_("B1", "bin_full", "major", T + timedelta(hours=1), {}, "Wajo")
        assert what == "opened" and again.id != row.id
        s.commit()
        book.publish()
        r = s.get(AlertRow, row.id)
        assert r is not None
        assert (r.status, r.acknowledged, r.severity, r.count) == ("cleared", True, "critical", 3)
        assert (r.ack_by, r.ack_at, r.cleared_by, r.cleared_at) == ("crew-7", T + timedelta(minutes=3), "system",
                                                                    T + timedelta(minutes=5))
        assert r.started_at == T and r.updated_at == T + timedelta(minutes=5)
        assert r.details == {"fillingLevel": 0.96}
        hist = s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id == row.id)
                         .order_by(AlertHistoryRow.id)).all()
        assert [(h.action, h.actor) for h in hist] == [("opened", "system"), ("escalated", "system"),
                                                       ("acknowledged", "crew-7"), ("cleared", "system")]
        assert hist[1].details == {"from": "major", "to": "critical"} and hist[3].details == {"reason": "emptied"}
    assert [(c.alert_id, c.action) for c in changes] == [
        (row.id, "opened"), (row.id, "escalated"), (row.id, "acknowledged"), (row.id, "cleared"), (again.id, "opened")]
    assert changes[2].alert["acknowledged"] is True and changes[2].alert["status"] == "active"
    assert changes[3].alert["cleared_at"] == (T + timedelta(minutes=5)).isoformat()


def test_topic_levels() -> None:
    assert topic_level("Ujung Pandang") == "Ujung Pandang"
    assert topic_level("a/b+c#") == "a_b_c_" and topic_level("") == "none"
    change = AlertChange(1, "opened", {"kecamatan": "", "type": "bin_full", "device_id": "X+1"})
    assert alert_topic(change) == "lorong/alerts/none/bin_full/X_1"


def test_mqtt_one_message_per_change(sessions: Any, mosquitto: stack.Service) -> None:
    sub = Subscriber(mosquitto.port)
    pub = MqttNotifier("127.0.0.1", mosquitto.port, client_id="alerts-pub-lifecycle")
    try:
        with sessions() as s:
            book = AlertBook(s, [pub])
            row, _ = book.raise_("24E124713B0000A1", "tilt", "major", T, {"tilt": 1}, "Ujung Pandang")
            book.raise_("24E124713B0000A1", "tilt", "major", T, {"tilt": 1})  # extend: no message
            s.commit()
            book.publish()
            book.publish()  # nothing left to publish
            assert len(sub.settle(1)) == 1
            book.acknowledge(row.id, T, "officer-1")
            book.clear(row.id, T, "officer-1", "fixed")
            s.commit()
            book.publish()
        msgs = sub.settle(3)
    finally:
        pub.close()
        sub.close()
    assert [(t, m["action"]) for t, m in msgs] == [
        ("lorong/alerts/Ujung Pandang/tilt/24E124713B0000A1", a) for a in ("opened", "acknowledged", "cleared")]
    assert msgs[2][1]["alert"]["cleared_by"] == "officer-1"
    with pytest.raises(ConnectionError):
        MqttNotifier("127.0.0.1", stack.free_port(), timeout_s=1.0)


class Hook(BaseHTTPRequestHandler):
    """Answers the statuses queued in ``server.statuses`` (then 200) and records each request."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv: Any = self.server
        srv.requests.append((dict(self.headers), json.loads(body)))
        status = srv.statuses.pop(0) if srv.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def hook() -> Iterator[Any]:
    """A real HTTP server on a free loopback port."""
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    srv.requests, srv.statuses = [], []
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_webhook_retries_then_delivers(hook: Any) -> None:
    url = f"http://127.0.0.1:{hook.server_address[1]}/alerts"
    wh = WebhookNotifier(url, attempts=4, backoff_s=0.01)
    change = AlertChange(7, "opened", {"id": 7, "type": "fire", "device_id": "F1", "updated_at": T.isoformat()})
    hook.statuses[:] = [503, 429]
    wh(change)
    assert len(hook.requests) == 3
    keys = {h["Idempotency-Key"] for h, _ in hook.requests}
    assert keys == {f"7:opened:{T.isoformat()}"}
    assert hook.requests[-1][1] == {"action": "opened", "alert": {  # with the catalogue's words of the type
        **change.alert, "title": {"id": "Api di tong", "en": "Fire in bin"}, "role": "crew",
        "what_to_do": {"id": "Jauhi tong, jangan buka tutupnya, telepon pemadam kebakaran 113.",
                       "en": "Keep away, do not open the lid, call the fire brigade on 113."}}}
    hook.statuses[:] = [400]  # refused: not retried
    with pytest.raises(httpx.HTTPStatusError):
        wh(change)
    assert len(hook.requests) == 4
    hook.statuses[:] = [500] * 4  # still failing after 4 tries: raised (the book logs it and goes on)
    with pytest.raises(RetryableStatus, match="HTTP 500"):
        wh(change)
    assert len(hook.requests) == 8
    with pytest.raises(WebhookDown):  # cooling down: not even tried
        wh(change)
    assert len(hook.requests) == 8
    wh.close()
    nobody = WebhookNotifier(f"http://127.0.0.1:{stack.free_port()}/", attempts=2, backoff_s=0.01)
    with pytest.raises(httpx.TransportError):
        nobody(change)


def test_failing_notifier_does_not_stop_the_others(sessions: Any, hook: Any) -> None:
    url = f"http://127.0.0.1:{hook.server_address[1]}/"
    hook.statuses[:] = [400, 400]  # refused twice (a 4xx: no retry, no cool-down)
    got: list[str] = []
    with sessions() as s:
        book = AlertBook(s, [WebhookNotifier(url, attempts=1), lambda c: got.append(c.action)])
        book.raise_("S1", "stuck", "minor", T, {})
        book.raise_("S2", "stuck", "minor", T, {})
        s.commit()
        assert book.publish() == 2
    assert got == ["opened", "opened"] and len(hook.requests) == 2


def test_alert_events_in_influx(influx: InfluxClient) -> None:
    log = InfluxAlertLog(influx)
    log(AlertChange(3, "opened", {"device_id": "B1", "kecamatan": "Wajo", "type": "bin_full", "severity": "major",
                                  "status": "active", "updated_at": T.isoformat()}))
    rows = influx.records(f'SELECT * FROM "{schema.MEASUREMENT_ALERT}"')
    assert rows == [{"time": int(T.timestamp() * 1000), "action": "opened", "alert_id": 3, "device_id": "B1",
                     "kecamatan": "Wajo", "severity": "major", "status": "active", "type": "bin_full"}]


def test_scheduler_runs_and_spaces_forecasts(sessions: Any, influx: InfluxClient) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="R1", kind="bin", depth_mm=1000))
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "R1"}, {"fillingLevel": 0.1 + 0.01 * k},
                             to_ms(T - timedelta(minutes=10 * (30 - k)))) for k in range(31)])
    cfg = AnalyticsSettings(interval_s=0.05, forecast_interval_s=3600)
    sched = Scheduler(sessions, influx, cfg, clock=lambda: T)
    first = sched.tick()
    second = sched.tick()
    assert (first.forecasts, second.forecasts, sched.runs) == (1, 0, 2)  # the second reused the first's
    sched.start()
    deadline = time.monotonic() + 10
    while sched.runs < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    sched.stop()
    assert sched.runs >= 4


def test_two_alert_publishers_side_by_side(mosquitto: stack.Service, make_settings: Callable[..., Settings],
                                          sessions: Any, caplog: pytest.LogCaptureFixture) -> None:
    # `lorong analytics run-once` while `schedule` runs: two publishers on one broker at once
    settings = make_settings(mqtt_port=mosquitto.port)
    sub = Subscriber(mosquitto.port)
    first, second = build_outbox(settings, sessions), build_outbox(settings, sessions)

    def message(n: int) -> OutboxMessage:
        alert = {"kecamatan": "Tallo", "type": "bin_full", "device_id": f"BIN-{n % 2}"}
        return OutboxMessage(n, "mqtt", n, "opened", notification_payload(n, "opened", alert), 0)

    try:
        pubs = [first.channels["mqtt"], second.channels["mqtt"]]
        assert all(isinstance(p, MqttChannel) for p in pubs)
        for n, pub in enumerate(pubs):
            pub.send(message(n))
        ids = [p.client_id for p in pubs if isinstance(p, MqttChannel)]
        assert ids[0] != ids[1] and str(ids[0]).startswith("lorong-analytics-")
        time.sleep(1.5)  # paho reconnects after 1 s: a kicked publisher would be fighting back by now
        for n, pub in enumerate(pubs):
            pub.send(message(n + 2))
        msgs = sub.settle(4)
        assert [p.client_id for p in pubs if isinstance(p, MqttChannel)] == ids  # the same connections
        assert "alert publisher disconnected" not in caplog.text
    finally:
        first.close()
        second.close()
        sub.close()
    assert sorted((t, m["notification_id"]) for t, m in msgs) == [
        ("lorong/alerts/Tallo/bin_full/BIN-0", 0), ("lorong/alerts/Tallo/bin_full/BIN-0", 2),
        ("lorong/alerts/Tallo/bin_full/BIN-1", 1), ("lorong/alerts/Tallo/bin_full/BIN-1", 3)]


def test_a_cleared_alert_cannot_be_acknowledged(sessions: Any) -> None:
    with sessions() as s:
        book = AlertBook(s, [])
        row, _ = book.raise_("B2", "bin_full", "major", T, {"fillingLevel": 0.85}, "Wajo")
        book.clear(row.id, T + timedelta(minutes=1), "crew-7", "emptied")
        with pytest.raises(AlertStateError, match="already cleared"):
            book.acknowledge(row.id, T + timedelta(minutes=2), "crew-7")
        assert not row.acknowledged
