"""A crew's "done" sticks in the demo's city, on real services: the live city's past loaded through the
ingest pipeline, bin_full raised by the analytics job, then a person's "Emptied" (crew page action, or an
alert cleared with the reason "emptied") read back by the city's crew watch, whose next readings travel
MQTT (mosquitto) -> ingester -> InfluxDB, and the next analytics run.

The test runs the city's clock 11 minutes past the real one (the bins report every 10 minutes), so its
ingester accepts device times up to an hour ahead (``max_future_s``); the analytics run at that clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import run_once
from api.auth import create_token
from api.main import create_app
from devices.registry import DeviceIn, RegistryLookup, add_device
from firmware_sim.city import FaultsConfig, load_city, packaged_city
from firmware_sim.live import LiveCity
from firmware_sim.live_store import CrewWatch, backfill
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.service import Ingester
from lorong.core.model import utcnow
from lorong.core.settings import IngestSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow, DeviceRow
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(make_settings: Callable[..., Settings], mosquitto: stack.Service, influx: InfluxClient,
             tmp_path: Path) -> Settings:
    ingest = IngestSettings(spool_dir=tmp_path / "spool", flush_interval_s=0.05, max_future_s=3600)
    return make_settings(mqtt_port=mosquitto.port, influx=influx, ingest=ingest)


@pytest.fixture
def api_url(settings: Settings) -> Iterator[str]:
    """The real API served by uvicorn on a free loopback port."""
    port = stack.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.wait_for_port(port, 10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def active_bin_full(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        rows = s.scalars(select(AlertRow).where(AlertRow.type == "bin_full", AlertRow.status == "active"))
        return {r.device_id: r.id for r in rows}


def levels_since(influx: InfluxClient, device_id: str, since: str) -> list[float]:
    series = influx.query(f"SELECT \"fillingLevel\" FROM waste_container WHERE device_id = '{device_id}' "
                          f"AND time > '{since}'")
    return [float(v[1]) for v in series[0].values] if series else []


def test_a_crews_emptied_empties_the_simulated_bin_and_bin_full_stays_cleared(
        settings: Settings, sessions: sessionmaker[Session], influx: InfluxClient, api_url: str) -> None:
    # the small city without trucks (no round days) or sensor faults: after a day many bins are full
    cfg = load_city(packaged_city("small"))
    cfg = cfg.model_copy(update={"rounds": cfg.rounds.model_copy(update={"weekdays": []}),
                                 "faults": FaultsConfig.model_validate({k: 0 for k in FaultsConfig.model_fields})})
    now = utcnow()
    live = LiveCity(cfg, now - timedelta(days=1), bins=10, stations=0, seed=11)
    old = next(d for d in live.bins if not live.bins[d].sim.lorawan)  # an earlier demo's bin of that id
    with sessions.begin() as s:
        add_device(s, DeviceIn(id=old, kind="bin", kecamatan="Wajo", depth_mm=2000, blind_zone_mm=100))
    loaded = backfill(live, now, sessions, influx)
    assert loaded.devices_new == 9 and loaded.points == loaded.messages >= 10 * 143
    with sessions() as s:
        row = s.get(DeviceRow, old)
        assert row is not None and row.depth_mm == live.bins[old].sim.depth_mm and row.blind_zone_mm == 150
    run_once(sessions, influx, settings.analytics, now=now)
    full = active_bin_full(sessions)
    assert len(full) >= 3, f"only {len(full)} bins full after a day without rounds"
    a, b, c = sorted(full)[:3]
    assert all(live.level(d) >= settings.analytics.full_threshold for d in (a, b, c))

    live.crew = CrewWatch(sessions).poll  # as `lorong demo` does after its backfill
    with sessions.begin() as s:
        crew = {"Authorization": f"Bearer {create_token(s, 'andi', 'crew')[1]}"}
    # a: "Emptied" on the crew page; b: its alert cleared with the reason "emptied" (Telegram's button);
    # c: cleared as a false alarm, so the bin is still full in the city (the control)
    r = httpx.post(f"{api_url}/bins/{a}/emptied", headers=crew, json={"note": "done"})
    assert r.status_code == 200 and r.json()["cleared"] == [full[a]], r.text
    for dev, reason in ((b, "emptied"), (c, "false alarm")):
        r = httpx.post(f"{api_url}/alerts/{full[dev]}/clear", headers=crew, json={"reason": reason})
        assert r.status_code == 200, r.text
    clicked = utcnow()
    assert set(full) - set(active_bin_full(sessions)) == {a, b, c}

    ingester = Ingester(settings, RegistryLookup(sessions), DeadLetterStore(sessions), influx)
    ingester.start()
    try:
        assert ingester.source.subscribed.wait(10)
        later = clicked + timedelta(minutes=11)  # every bin reports once more
        msgs = live.step(1.0, later)
        assert {t.split("/")[-2].upper() for t, _p in msgs} >= {a.upper(), b.upper(), c.upper()}
        pub = Publisher("127.0.0.1", settings.mqtt.port, client_id="test-demo-city")
        pub.publish_many(msgs)
        pub.close()
        wait_for(lambda: ingester.stats.received >= len(msgs) and ingester.spool.depth() == 0
                 and ingester.stats.stored_points >= len(msgs), what="the city's readings stored")
    finally:
        ingester.stop()

    since = clicked.isoformat().replace("+00:00", "Z")
    for dev in (a, b):
        got = levels_since(influx, dev, since)
        # emptied to 0-3 %, +-10 mm of sensor noise, and the bags of up to 11 minutes since (0.5-2.5 % each,
        # a market bin at its busiest hour gets several: 0.076 was seen; by the wall clock the test runs at)
        assert got and max(got) < 0.2, (dev, got)
    assert min(levels_since(influx, c, since)) >= settings.analytics.full_threshold

    report = run_once(sessions, influx, settings.analytics, now=later + timedelta(seconds=5))
    still = active_bin_full(sessions)
    assert a not in still and b not in still  # a person's "done" sticks
    assert c in still and report.opened.get("bin_full", 0) >= 1  # the false alarm's bin is full: opened again
