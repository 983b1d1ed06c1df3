"""Outbox delivery over real services, on both SQL back ends: a Mosquitto broker that is down when
the job runs and started later, a broker that stops answering (no PUBACK), and a real local HTTP
server as the webhook answering 500, 429, 400 and 200. Retry times come from an injected ``now``:
no test sleeps through a backoff."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from analytics.alerts import AlertBook
from analytics.jobs import run_once
from analytics.notify import build_outbox
from analytics.notify_mqtt import MqttChannel, topic_for
from analytics.notify_webhook import WebhookChannel
from analytics.outbox import Outbox
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow
from lorong.storage.tables import NotificationOutboxRow as Row
from tests.analytics.test_alerts import hook  # noqa: F401  (a real HTTP server on a free loopback port)
from tests.analytics.test_scenarios import FILL, MIN, NOW, at, bin_, register, write
from tests.devices.conftest import backend, db_url, empty_db_url, postgres_server  # noqa: F401  (both back ends)
from tests.support import Subscriber

pytestmark = pytest.mark.integration


def rows(sessions: Any, channel: str) -> list[Row]:
    """The channel's outbox rows, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).where(Row.channel == channel).order_by(Row.id)))


def hook_url(server: Any) -> str:
    """URL of the test webhook."""
    return f"http://127.0.0.1:{server.server_address[1]}/alerts"


def open_alerts(sessions: Any, channels: list[str], *devices: str) -> list[int]:
    """Open one bin_full alert per device in one transaction; their ids."""
    with sessions.begin() as s:
        book = AlertBook(s, channels=channels)
        return [book.raise_(d, "bin_full", "major", NOW, {"fillingLevel": 0.9}, "Wajo")[0].id for d in devices]


def test_broker_down_when_the_job_runs_then_back(sessions: Any, influx: InfluxClient, hook: Any,  # noqa: F811
                                                 make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    port = stack.free_port()  # nobody listens yet
    settings = make_settings(mqtt_port=port, influx=influx,
                             analytics=AnalyticsSettings(webhook_url=hook_url(hook), outbox_backoff_s=60))
    register(sessions, bin_("B1"), bin_("B2"))
    for device in ("B1", "B2"):
        write(influx, device, [(at(k), {"fillingLevel": v}) for k, v in enumerate(FILL[:6])])
    outbox = build_outbox(settings, sessions)
    svc: stack.Service | None = None
    sub: Subscriber | None = None
    try:
        report = run_once(sessions, influx, settings.analytics, [], now=at(5) + MIN, outbox=outbox)
        assert report.opened == {"bin_full": 2}
        pending = rows(sessions, "mqtt")
        assert [(r.action, r.attempts, r.sent_at) for r in pending] == [("opened", 1, None), ("opened", 0, None)]
        assert "did not accept" in (pending[0].last_error or "")
        assert len(hook.requests) == 2  # the webhook did not wait for the broker

        with sessions.begin() as s:  # more changes while the broker is down (the API's path)
            b1, b2 = s.scalars(select(AlertRow).order_by(AlertRow.device_id)).all()
            book = AlertBook(s, channels=outbox.names)
            book.acknowledge(b1.id, NOW + 2 * MIN, "crew:7")
            book.clear(b2.id, NOW + 3 * MIN, "crew:7", "emptied")
        assert outbox.dispatch().sent == {"webhook": 2}  # mqtt's head is still in its 60 s backoff
        assert len(rows(sessions, "mqtt")) == 4 and all(r.sent_at is None for r in rows(sessions, "mqtt"))

        (tmp_path / "mq").mkdir()
        svc = stack.start_mosquitto(tmp_path / "mq", port)
        sub = Subscriber(port)
        assert outbox.dispatch(now=utcnow() + timedelta(seconds=61)).sent == {"mqtt": 4}
        assert outbox.dispatch(now=utcnow() + timedelta(hours=1)).sent == {}
        msgs = sub.settle(4)
    finally:
        outbox.close()
        if sub is not None:
            sub.close()
        if svc is not None:
            svc.stop()
    sent = rows(sessions, "mqtt")
    assert all(r.sent_at is not None for r in sent)
    bodies = [json.loads(r.payload) for r in sent]
    assert msgs == [(topic_for(b["alert"]), b) for b in bodies]  # each once, in order, as stored
    assert [(b["action"], b["alert"]["device_id"]) for b in bodies] == [
        ("opened", "B1"), ("opened", "B2"), ("acknowledged", "B1"), ("cleared", "B2")]
    assert len({b["notification_id"] for b in bodies}) == 4
    assert [body for _, body in hook.requests] == bodies  # the same changes, the same ids, the same order
    assert [h["Idempotency-Key"] for h, _ in hook.requests] == [str(b["notification_id"]) for b in bodies]
    # subscribers read the catalogue's words beside the type code: no table of their own
    received = msgs[0][1]["alert"]
    assert (received["type"], received["role"]) == ("bin_full", "crew")
    assert received["title"] == {"id": "Tong penuh", "en": "Bin full"}
    assert received["what_to_do"] == {"id": "Kosongkan tong ini hari ini; kritis berarti sampah sudah hampir meluap.",
                                      "en": "Empty this bin today; critical means it is about to overflow."}
    assert all(b["alert"]["title"]["en"] == "Bin full" for _, b in hook.requests)


def test_webhook_500_then_429_then_200_with_backoff(sessions: Any, hook: Any) -> None:  # noqa: F811
    open_alerts(sessions, ["webhook"], "B1", "B2")
    box = Outbox(sessions, {"webhook": WebhookChannel(hook_url(hook))}, backoff_s=5, backoff_max_s=600)
    hook.statuses[:] = [500, 429]
    t0 = utcnow() + timedelta(seconds=1)
    try:
        assert box.dispatch(now=t0).deferred == {"webhook": f"webhook {hook_url(hook)}: HTTP 500"}
        head = rows(sessions, "webhook")[0]
        assert (head.attempts, head.next_attempt_at, head.last_error) == (
            1, t0 + timedelta(seconds=5), f"webhook {hook_url(hook)}: HTTP 500")
        assert box.dispatch(now=t0 + timedelta(seconds=4.9)).deferred == {}  # not due: not even tried
        assert len(hook.requests) == 1
        assert "HTTP 429" in box.dispatch(now=t0 + timedelta(seconds=5)).deferred["webhook"]  # try later
        head = rows(sessions, "webhook")[0]
        assert (head.attempts, head.next_attempt_at) == (2, t0 + timedelta(seconds=15))  # 5 s, then 10 s
        assert box.dispatch(now=t0 + timedelta(seconds=14)).sent == {} and len(hook.requests) == 2
        assert box.dispatch(now=t0 + timedelta(seconds=15)).sent == {"webhook": 2}
    finally:
        box.close()
    bodies = [json.loads(r.payload) for r in rows(sessions, "webhook")]
    assert [b for _, b in hook.requests] == [bodies[0]] * 3 + [bodies[1]]  # the head three times, then the next
    assert {h["Idempotency-Key"] for h, _ in hook.requests[:3]} == {str(bodies[0]["notification_id"])}
    assert [r.sent_at for r in rows(sessions, "webhook")] == [t0 + timedelta(seconds=15)] * 2

    nobody = WebhookChannel(f"http://127.0.0.1:{stack.free_port()}/", timeout_s=1.0)
    box = Outbox(sessions, {"webhook": nobody})
    open_alerts(sessions, ["webhook"], "B3")
    assert "ConnectError" in box.dispatch().deferred["webhook"]  # receiver down: later, not refused
    assert rows(sessions, "webhook")[-1].failed_at is None
    box.close()


def test_webhook_400_is_refused_and_mqtt_goes_on(sessions: Any, hook: Any, mosquitto: stack.Service,  # noqa: F811
                                                 make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(mqtt_port=mosquitto.port, analytics=AnalyticsSettings(webhook_url=hook_url(hook)))
    outbox = build_outbox(settings, sessions)
    sub = Subscriber(mosquitto.port)
    hook.statuses[:] = [400]
    try:
        open_alerts(sessions, outbox.names, "R1", "R2")
        report = outbox.dispatch()
        assert (report.sent, report.refused, report.deferred) == ({"mqtt": 2, "webhook": 1}, {"webhook": 1}, {})
        assert outbox.dispatch(now=utcnow() + timedelta(days=1)).sent == {}  # the refused row is not retried
        msgs = sub.settle(2)
        status = {s.channel: (s.pending, s.failed) for s in outbox.status()}
    finally:
        outbox.close()
        sub.close()
    assert len(hook.requests) == 2 and status == {"mqtt": (0, 0), "webhook": (0, 1)}
    refused, delivered = rows(sessions, "webhook")
    assert (refused.attempts, refused.sent_at, refused.last_error) == (1, None, f"webhook {hook_url(hook)}: HTTP 400")
    assert refused.failed_at is not None and delivered.sent_at is not None
    assert [m["alert"]["device_id"] for _, m in msgs] == ["R1", "R2"]


def test_no_puback_is_not_delivered(sessions: Any, tmp_path: Path) -> None:
    # a broker that accepts the connection but stops answering (SIGSTOP): no PUBACK, so not delivered
    svc = stack.start_mosquitto(tmp_path, stack.free_port())
    channel = MqttChannel("127.0.0.1", svc.port, timeout_s=1.0)
    box = Outbox(sessions, {"mqtt": channel})
    sub = Subscriber(svc.port)
    try:
        open_alerts(sessions, ["mqtt"], "P1")
        assert box.dispatch().sent == {"mqtt": 1}
        open_alerts(sessions, ["mqtt"], "P2")
        os.kill(svc.proc.pid, signal.SIGSTOP)
        try:
            assert "no PUBACK within 1.0 s" in box.dispatch().deferred["mqtt"]
        finally:
            os.kill(svc.proc.pid, signal.SIGCONT)
        head = rows(sessions, "mqtt")[1]
        assert (head.attempts, head.sent_at) == (1, None)
        assert box.dispatch(now=utcnow() + timedelta(seconds=6)).sent == {"mqtt": 1}
        msgs = sub.settle(3)
    finally:
        box.close()
        sub.close()
        svc.stop()
    # the broker got the first try before it froze and delivered it on waking: at least once, same id
    ids = [m["notification_id"] for _, m in msgs]
    first, second = (json.loads(r.payload)["notification_id"] for r in rows(sessions, "mqtt"))
    assert ids[0] == first and set(ids[1:]) == {second} and len(ids) in (2, 3)
