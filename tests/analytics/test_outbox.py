"""The notification outbox on both SQL back ends (SQLite and a real PostgreSQL): rows written in the
transaction of the alert change, the migration up and down, claims that keep two dispatchers from
sending the same row, retention, the scheduler's tick, the API and the ``lorong analytics outbox`` CLI.

Delivery over the real broker and a real webhook is in ``test_outbox_delivery.py``. Channels here
are :class:`Recorder`, the in-memory twin of :class:`analytics.outbox.Channel` (house style R9).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, select, update
from typer.testing import CliRunner

from analytics.alerts import AlertBook, snapshot
from analytics.cli import app
from analytics.outbox import DeliveryRefused, Outbox, OutboxMessage, backoff
from analytics.scheduler import Scheduler
from api.auth import create_token
from lorong.core.alerts import ALERT_TYPES
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings, Settings
from lorong.storage import stack
from lorong.storage.db import alembic_config, make_engine, migrate
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertHistoryRow, AlertRow
from lorong.storage.tables import NotificationOutboxRow as Row
from tests.analytics.test_scenarios import NOW
from tests.api.conftest import serve
from tests.devices.conftest import backend, db_url, empty_db_url, postgres_server  # noqa: F401  (both back ends)

BOTH = ["mqtt", "webhook"]


class Recorder:
    """An in-memory channel: records the ids it sent; ``refuse`` ids are refused, ``down`` fails every
    send, ``gate`` (when set) holds each send until it is set."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.refuse: set[int] = set()
        self.down = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def send(self, message: OutboxMessage) -> None:
        """Record ``message.id`` (or fail as configured)."""
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.down:
            raise ConnectionError("receiver down")
        if message.id in self.refuse:
            raise DeliveryRefused("HTTP 400 bad alert")
        self.sent.append(message.id)

    def close(self) -> None:
        """Nothing to release."""


def rows(sessions: Any) -> list[Row]:
    """Every outbox row, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).order_by(Row.id)))


def open_alerts(sessions: Any, n: int, channels: list[str] = BOTH, prefix: str = "B") -> list[int]:
    """Open ``n`` alerts (one change each) in one transaction on devices ``<prefix><k>``; their ids."""
    with sessions.begin() as s:
        book = AlertBook(s, channels=channels)
        return [book.raise_(f"{prefix}{k}", "bin_full", "major", NOW, {"fillingLevel": 0.9}, "Wajo")[0].id
                for k in range(n)]


def test_rows_are_written_with_the_change_and_only_with_it(sessions: Any) -> None:
    with sessions() as s:
        book = AlertBook(s, channels=BOTH)
        with book.batch():  # the job's path: history ids after one flush
            first, _ = book.raise_("B1", "bin_full", "major", NOW, {"fillingLevel": 0.86}, "Wajo")
            book.raise_("B1", "bin_full", "major", NOW, {"fillingLevel": 0.87})  # extended: not a change
        book.acknowledge(first.id, NOW + timedelta(minutes=1), "crew:7")  # the API's path
        s.commit()
        history = s.scalars(select(AlertHistoryRow).order_by(AlertHistoryRow.id)).all()
        alert = snapshot(s.get(AlertRow, first.id))
    got = rows(sessions)
    assert [(r.channel, r.alert_id, r.action, r.attempts, r.sent_at, r.failed_at) for r in got] == [
        ("mqtt", first.id, "opened", 0, None, None), ("webhook", first.id, "opened", 0, None, None),
        ("mqtt", first.id, "acknowledged", 0, None, None), ("webhook", first.id, "acknowledged", 0, None, None)]
    bodies = [json.loads(r.payload) for r in got]
    assert [b["notification_id"] for b in bodies] == [history[0].id, history[0].id, history[1].id, history[1].id]
    assert bodies[2] == {"notification_id": history[1].id, "action": "acknowledged",
                         "alert": {**alert, "title": {"id": "Tong penuh", "en": "Bin full"}, "role": "crew",
                                   "what_to_do": {"id": ALERT_TYPES["bin_full"].words["id"].action,
                                                  "en": ALERT_TYPES["bin_full"].words["en"].action}}}
    assert bodies[0]["alert"]["details"] == {"fillingLevel": 0.87} and bodies[0]["action"] == "opened"
    assert all(r.next_attempt_at == r.created_at for r in got)

    with sessions() as s:  # rolled back: no alert, no history, no outbox row
        AlertBook(s, channels=BOTH).clear(first.id, NOW + timedelta(minutes=2), "crew:7")
        s.rollback()
    with pytest.raises(RuntimeError), sessions.begin() as s:
        AlertBook(s, channels=BOTH).raise_("B2", "fire", "critical", NOW, {}, "Wajo")
        raise RuntimeError("the job failed after the rules")
    with pytest.raises(RuntimeError), sessions.begin() as s:
        book = AlertBook(s, channels=BOTH)
        with book.batch():
            book.raise_("B3", "fire", "critical", NOW, {}, "Wajo")
            raise RuntimeError("a rule raised inside the batch")
    assert len(rows(sessions)) == 4
    with sessions() as s:
        assert s.get(AlertRow, first.id).status == "active"
        assert len(s.scalars(select(AlertRow)).all()) == 1
    with sessions.begin() as s:  # no channels: no rows (run-once --no-notify, tests)
        AlertBook(s).raise_("B4", "fire", "critical", NOW, {}, "Wajo")
    assert len(rows(sessions)) == 4


def test_migration_up_and_down(empty_db_url: str) -> None:  # noqa: F811
    migrate(empty_db_url, "0002")
    engine = make_engine(empty_db_url)
    assert "notification_outbox" not in inspect(engine).get_table_names()
    migrate(empty_db_url)
    insp = inspect(engine)
    assert "notification_outbox" in insp.get_table_names()
    assert {i["name"] for i in insp.get_indexes("notification_outbox")} == {
        "ix_notification_outbox_pending", "ix_notification_outbox_sent_at"}
    assert insp.get_foreign_keys("notification_outbox")[0]["referred_table"] == "alerts"
    command.downgrade(alembic_config(empty_db_url), "0002")
    tables = set(inspect(engine).get_table_names())
    assert "notification_outbox" not in tables and {"alerts", "alert_history", "devices"} <= tables
    migrate(empty_db_url)
    assert "notification_outbox" in inspect(engine).get_table_names()
    engine.dispose()


def test_backoff_formula() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert backoff(10_000) == timedelta(minutes=10)
    assert backoff(3, base_s=1.0, cap_s=3.0) == timedelta(seconds=3)


def test_order_refusal_backoff_and_channels_apart(sessions: Any) -> None:
    open_alerts(sessions, 3)
    mqtt, hook = Recorder(), Recorder()
    box = Outbox(sessions, {"mqtt": mqtt, "webhook": hook}, backoff_s=5, backoff_max_s=600)
    ids = {c: [r.id for r in rows(sessions) if r.channel == c] for c in BOTH}
    hook.refuse = {ids["webhook"][0]}
    mqtt.down = True
    t0 = utcnow() + timedelta(seconds=1)
    report = box.dispatch(now=t0)
    assert (report.sent, report.refused, report.deferred) == (
        {"webhook": 2}, {"webhook": 1}, {"mqtt": "receiver down"})
    assert hook.sent == ids["webhook"][1:] and mqtt.sent == []
    by_id = {r.id: r for r in rows(sessions)}
    head = by_id[ids["mqtt"][0]]
    assert (head.attempts, head.next_attempt_at, head.last_error) == (1, t0 + timedelta(seconds=5), "receiver down")
    assert [by_id[i].attempts for i in ids["mqtt"][1:]] == [0, 0]  # only the head waits; the rest wait behind it
    refused = by_id[ids["webhook"][0]]
    assert (refused.failed_at, refused.sent_at, refused.attempts, refused.last_error) == (
        t0, None, 1, "HTTP 400 bad alert")

    mqtt.down = False
    assert box.dispatch(now=t0 + timedelta(seconds=4)).sent == {}  # not due yet: nothing, not even the rest
    assert box.dispatch(now=t0 + timedelta(seconds=5)).sent == {"mqtt": 3}
    assert mqtt.sent == ids["mqtt"]  # in id order
    assert box.dispatch(now=t0 + timedelta(seconds=6)).sent == {}  # refused rows are not retried
    assert hook.sent == ids["webhook"][1:]
    status = {s.channel: s for s in box.status()}
    assert (status["webhook"].pending, status["webhook"].failed, status["mqtt"].pending) == (0, 1, 0)

    hook.refuse = set()
    assert box.retry_failed("webhook", now=t0 + timedelta(seconds=7)) == 1
    assert box.dispatch(now=t0 + timedelta(seconds=7)).sent == {"webhook": 1}
    assert sorted(hook.sent) == ids["webhook"]
    assert all(r.sent_at is not None and r.failed_at is None for r in rows(sessions))


def test_two_dispatchers_never_send_the_same_row(sessions: Any) -> None:
    open_alerts(sessions, 4, ["mqtt"])
    slow, other = Recorder(), Recorder()
    slow.gate = threading.Event()
    first, second = Outbox(sessions, {"mqtt": slow}), Outbox(sessions, {"mqtt": other})
    th = threading.Thread(target=first.dispatch)
    th.start()
    assert slow.entered.wait(10)  # the first holds the head while it sends
    assert second.dispatch().sent == {}  # claimed: the second leaves the channel alone
    slow.gate.set()
    th.join(10)
    assert other.sent == [] and slow.sent == [r.id for r in rows(sessions)]
    assert second.dispatch().sent == {}

    # a dispatcher that died mid-send leaves a claim: the row goes again once the claim expired
    open_alerts(sessions, 1, ["mqtt"], prefix="C")
    last = rows(sessions)[-1].id
    with sessions.begin() as s:
        s.execute(update(Row).where(Row.id == last).values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    assert second.dispatch().sent == {}
    assert second.dispatch(now=utcnow() + timedelta(minutes=5, seconds=1)).sent == {"mqtt": 1}
    assert other.sent == [last]


def test_limit_leaves_the_rest_for_the_next_round(sessions: Any) -> None:
    open_alerts(sessions, 5, ["mqtt"])
    rec = Recorder()
    box = Outbox(sessions, {"mqtt": rec})
    assert box.dispatch(limit=2).sent == {"mqtt": 2}
    assert Outbox(sessions, {"mqtt": Recorder()}).dispatch(limit=1).sent == {"mqtt": 1}  # not claimed
    assert box.dispatch().sent == {"mqtt": 2}
    assert len(rec.sent) == 4 and all(r.sent_at is not None for r in rows(sessions))


def test_retention_deletes_only_old_sent_rows(sessions: Any) -> None:
    open_alerts(sessions, 4, ["mqtt"])
    now = utcnow()
    old, recent, pending, refused = (r.id for r in rows(sessions))
    with sessions.begin() as s:
        s.execute(update(Row).where(Row.id == old).values(sent_at=now - timedelta(days=7, seconds=1)))
        s.execute(update(Row).where(Row.id == recent).values(sent_at=now - timedelta(days=6, hours=23)))
        s.execute(update(Row).where(Row.id == refused).values(failed_at=now - timedelta(days=30)))
    box = Outbox(sessions, {}, retention_days=7)
    assert box.purge(now) == 1
    assert [r.id for r in rows(sessions)] == [recent, pending, refused]
    assert box.purge(now) == 0
    assert Outbox(sessions, {}, retention_days=0).purge(now) == 1  # recent; pending and refused stay
    assert [r.id for r in rows(sessions)] == [pending, refused]


def test_scheduler_drains_the_backlog_even_when_the_run_fails(sessions: Any) -> None:
    open_alerts(sessions, 2, ["mqtt"])
    rec = Recorder()
    dead = InfluxClient(f"http://127.0.0.1:{stack.free_port()}", "lorong", timeout_s=1.0)
    sched = Scheduler(sessions, dead, AnalyticsSettings(), outbox=Outbox(sessions, {"mqtt": rec}), clock=lambda: NOW)
    with pytest.raises(Exception, match="influx"):
        sched.tick()
    dead.close()
    assert rec.sent == [r.id for r in rows(sessions)] and len(rec.sent) == 2


def test_api_changes_are_queued(make_settings: Callable[..., Settings], sessions: Any, influx: InfluxClient) -> None:
    (alert_id,) = open_alerts(sessions, 1, [])
    with sessions.begin() as s:
        token = create_token(s, "crew", "crew")[1]
    srv = serve(make_settings(influx=influx, analytics=AnalyticsSettings(webhook_url="http://127.0.0.1:9/")))
    try:
        r = httpx.post(f"{srv.url}/alerts/{alert_id}/ack", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    finally:
        srv.stop()
    assert r.status_code == 200
    got = rows(sessions)
    assert [(x.channel, x.alert_id, x.action) for x in got] == [(c, alert_id, "acknowledged") for c in BOTH]
    assert json.loads(got[0].payload)["alert"]["ack_by"] == "crew:crew"


def test_outbox_cli(sessions: Any, db_url: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                    tmp_path: Path) -> None:
    open_alerts(sessions, 3)
    now = utcnow()
    first = rows(sessions)[0]
    with sessions.begin() as s:
        s.execute(update(Row).where(Row.id == first.id).values(attempts=2, last_error="HTTP 500\nbody"))
        s.execute(update(Row).where(Row.channel == "webhook", Row.alert_id == first.alert_id)
                  .values(failed_at=now, last_error="HTTP 400"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    monkeypatch.setenv("LORONG_ANALYTICS__WEBHOOK_URL", "http://127.0.0.1:9/hook")
    runner = CliRunner()
    out = runner.invoke(app, ["outbox"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["channel", "pending", "failed", "oldest", "pending", "attempts", "next", "attempt",
                                "last", "error"]
    mqtt, webhook = (line.split() for line in lines[1:])
    assert mqtt[:3] == ["mqtt", "3", "0"] and mqtt[3] == first.created_at.isoformat(timespec="seconds")
    assert mqtt[4:] == ["2", first.next_attempt_at.isoformat(timespec="seconds"), "HTTP", "500"]
    assert webhook[:3] == ["webhook", "2", "1"] and webhook[4] == "0" and webhook[6:] == ["-"]
    out = runner.invoke(app, ["outbox", "--retry-failed"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "re-queued 1 failed notification"
    assert out.output.splitlines()[3].split()[:3] == ["webhook", "3", "0"]
