"""Restarting the demo with fewer bins: the bins it dropped leave the run (registry status
``in_stock``) and their alerts are cleared, instead of turning ``offline`` for ever. Real
InfluxDB and SQLite; the demo's backfill and the analytics job as ``lorong demo`` runs them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import run_once
from devices.registry import DeviceIn, add_device
from firmware_sim.city import FaultsConfig, load_city, packaged_city
from firmware_sim.live import LiveCity
from firmware_sim.live_store import backfill
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow, DeviceRow


def active_offline(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as s:
        return set(s.scalars(select(AlertRow.device_id).where(AlertRow.type == "offline",
                                                              AlertRow.status == "active")))


def test_bins_dropped_by_a_smaller_demo_raise_no_offline_alerts(sessions: sessionmaker[Session],
                                                                 influx: InfluxClient) -> None:
    cfg = load_city(packaged_city("small"))
    cfg = cfg.model_copy(update={"faults": FaultsConfig.model_validate({k: 0 for k in FaultsConfig.model_fields})})
    influx.create_database()
    now = utcnow()
    first_end = now - timedelta(hours=3)
    first = LiveCity(cfg, first_end - timedelta(hours=6), bins=4, stations=0, seed=3)  # the first demo: 4 bins
    backfill(first, first_end, sessions, influx)
    with sessions.begin() as s:  # a bin a person registered, silent too: not the demo's to drop
        add_device(s, DeviceIn(id="OWN-BIN-1", kind="bin", kecamatan="Wajo", depth_mm=1000,
                               installed_at=first_end - timedelta(days=1)))
    analytics = AnalyticsSettings()
    run_once(sessions, influx, analytics, now=now - timedelta(hours=1))
    assert active_offline(sessions) == {*first.bins, "OWN-BIN-1"}  # the first demo stopped 2 h ago

    second = LiveCity(cfg, now - timedelta(hours=6), bins=2, stations=0, seed=3)  # restarted with 2 bins
    assert set(second.bins) < set(first.bins)
    backfill(second, now, sessions, influx)
    run_once(sessions, influx, analytics, now=now)
    assert active_offline(sessions) == {"OWN-BIN-1"}
    dropped = set(first.bins) - set(second.bins)
    with sessions() as s:
        status = {d: s.get(DeviceRow, d).status for d in first.bins}  # type: ignore[union-attr]
    assert status == {d: "in_stock" if d in dropped else "active" for d in first.bins}

    third = LiveCity(cfg, now - timedelta(hours=6), bins=4, stations=0, seed=3)  # and back to 4: active again
    backfill(third, now, sessions, influx)
    with sessions() as s:
        assert {s.get(DeviceRow, d).status for d in first.bins} == {"active"}  # type: ignore[union-attr]
