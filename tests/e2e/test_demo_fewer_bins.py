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
from firmware_sim.demo_cities import parse_cities, register_cities
from firmware_sim.live import LiveCity
from firmware_sim.live_store import LEFT_OUT, backfill
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertHistoryRow, AlertRow, DeviceRow


def active_offline(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as s:
        return set(s.scalars(select(AlertRow.device_id).where(AlertRow.type == "offline",
                                                              AlertRow.status == "active")))


NO_FAULTS = FaultsConfig.model_validate({k: 0 for k in FaultsConfig.model_fields})
"""A city's faults are planned from its first local midnight, so with the wall clock's ``now`` an offline
stretch of a city's own would fall at the end of the run at some times of day: these tests have none."""


def test_bins_dropped_by_a_smaller_demo_raise_no_offline_alerts(sessions: sessionmaker[Session],
                                                                 influx: InfluxClient) -> None:
    cfg = load_city(packaged_city("small")).model_copy(update={"faults": NO_FAULTS})
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


def test_a_plain_demo_after_several_cities_takes_the_other_cities_out(sessions: sessionmaker[Session],
                                                                        influx: InfluxClient) -> None:
    """``demo --cities makassar,jakarta,banyuwangi`` then a plain ``demo`` (Makassar only): Jakarta's and
    Banyuwangi's demo devices leave the run (``in_stock``, alerts cleared) instead of staying ``active``
    and turning ``offline``; Makassar's that run again stay ``active``."""
    plans = parse_cities("makassar,jakarta,banyuwangi")
    with sessions.begin() as s:
        register_cities(s, plans)
    influx.create_database()
    now = utcnow()
    first_end = now - timedelta(hours=3)
    configs = [p.config.model_copy(update={"faults": NO_FAULTS}) for p in plans]
    lives = [LiveCity(c, first_end - timedelta(hours=6), bins=2, stations=0, seed=3) for c in configs]
    run = {d for live in lives for d in live.bins}
    for plan, live in zip(plans, lives, strict=True):  # as `demo --cities` loads them, one city at a time
        backfill(live, first_end, sessions, influx, city_id=plan.id, run=run)
    with sessions() as s:  # loading one city took none of the others out
        assert {s.get(DeviceRow, d).status for d in run} == {"active"}  # type: ignore[union-attr]
    analytics = AnalyticsSettings()
    run_once(sessions, influx, analytics, now=now - timedelta(hours=1))
    assert active_offline(sessions) == run  # the cities stopped 2 h ago

    others = {d for live in lives[1:] for d in live.bins}  # Jakarta's and Banyuwangi's
    with sessions() as s:
        raised = len(s.scalars(select(AlertRow.id).where(AlertRow.device_id.in_(others),
                                                          AlertRow.status == "active")).all())
    assert raised >= 4  # at least the 4 offline alerts of Jakarta's and Banyuwangi's bins
    plain = LiveCity(configs[0], now - timedelta(hours=6), bins=2, stations=0, seed=3)  # plain `demo`
    backfill(plain, now, sessions, influx, city_id="makassar")
    run_once(sessions, influx, analytics, now=now)
    assert active_offline(sessions) == set()
    with sessions() as s:
        status = {d: s.get(DeviceRow, d).status for d in run}  # type: ignore[union-attr]
        left = s.execute(select(AlertRow.status, AlertHistoryRow.details)
                         .join(AlertHistoryRow, AlertHistoryRow.alert_id == AlertRow.id)
                         .where(AlertRow.device_id.in_(run - set(plain.bins)), AlertHistoryRow.action == "cleared")
                         ).tuples().all()
    assert set(plain.bins) == run - others
    assert status == {d: "active" if d in plain.bins else "in_stock" for d in run}
    assert left == [("cleared", {"reason": LEFT_OUT})] * raised  # every alert of the cities not run
