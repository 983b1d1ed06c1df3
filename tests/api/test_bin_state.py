"""The bins snapshot behind ``GET /bins``: freshness rules, invalidation, and the exact BinOut shape."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.bin_state import bin_entry, bin_snapshot, load_bins, pick
from api.schemas import AlertOut, BinOut
from lorong.core.model import to_ms, utcnow
from lorong.storage.tables import DeviceLatestRow
from tests.api.conftest import serve
from tests.api.seed import add_bin, fleet, set_latest
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _set_fill(sessions: sessionmaker[Session], device_id: str, level: float) -> None:
    with sessions.begin() as s:
        row = s.get(DeviceLatestRow, device_id)
        assert row is not None
        row.metrics = {**row.metrics, "fillingLevel": [level, row.metrics["fillingLevel"][1]]}


def test_snapshot_freshness(sessions: sessionmaker[Session]) -> None:
    fleet(sessions, utcnow())
    snap = bin_snapshot(sessions, 0.8, ttl_s=0.3, max_age_s=60)
    first = snap.items()
    assert [e.id for e in first][:2] == ["MKS-BIN-0001", "MKS-BIN-0003"]
    _set_fill(sessions, "MKS-BIN-0004", 0.99)
    assert snap.items() is first  # younger than ttl_s: served as is
    time.sleep(0.35)
    assert snap.items() is first  # older: still served once, while a thread rebuilds it
    wait_for(lambda: snap.items()[0].id == "MKS-BIN-0004", 5.0, "snapshot reloaded", every_s=0.02)
    snap.invalidate()
    with sessions.begin() as s:
        add_bin(s, "MKS-BIN-0006")
        set_latest(s, "MKS-BIN-0006", utcnow(), fillingLevel=1.0)
    assert snap.items()[0].id == "MKS-BIN-0006"  # invalidated: rebuilt before answering


def test_snapshot_too_old_is_rebuilt_before_answering(sessions: sessionmaker[Session]) -> None:
    fleet(sessions, utcnow())
    snap = bin_snapshot(sessions, 0.8, ttl_s=0.05, max_age_s=0.2)
    snap.items()
    _set_fill(sessions, "MKS-BIN-0002", 0.97)
    time.sleep(0.25)
    assert snap.items()[0].id == "MKS-BIN-0002"


def test_pick(sessions: sessionmaker[Session]) -> None:
    fleet(sessions, utcnow())
    with sessions() as s:
        entries = load_bins(s, 0.8)
    ids = lambda es: [e.id for e in es]  # noqa: E731
    assert ids(pick(entries, None, None, 100, 0)) == ["MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002",
                                                      "MKS-BIN-0004", "MKS-BIN-0005"]
    assert ids(pick(entries, None, 0.55, 100, 0)) == ["MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002"]
    assert ids(pick(entries, "Tallo", None, 1, 1)) == ["MKS-BIN-0005"]
    assert ids(pick(entries, "Wajo", 0.0, 100, 0)) == ["MKS-BIN-0001", "MKS-BIN-0002"]
    assert pick(entries, None, None, 100, 5) == []


def test_api_snapshot_is_invalidated_by_device_changes(settings: Any, sessions: sessionmaker[Session],
                                                        tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    srv = serve(settings, bins_ttl_s=60.0)
    tech = {"Authorization": f"Bearer {tokens['technician']}"}
    try:
        with httpx.Client(base_url=srv.url, headers=tech) as c:
            assert c.get("/bins?limit=1").json()[0]["id"] == "MKS-BIN-0001"
            _set_fill(sessions, "MKS-BIN-0004", 0.99)
            assert c.get("/bins?limit=1").json()[0]["id"] == "MKS-BIN-0001"  # snapshot, by design
            assert c.get("/bins/MKS-BIN-0004").json()["fillingLevel"] == 0.99  # one bin: straight from SQL
            assert c.patch("/devices/MKS-BIN-0004", json={"street": "Jl. Nusantara"}).status_code == 200
            top = c.get("/bins?limit=1").json()[0]
            assert (top["id"], top["street"]) == ("MKS-BIN-0004", "Jl. Nusantara")
            assert c.delete("/devices/MKS-BIN-0004").status_code == 200
            assert "MKS-BIN-0004" not in [b["id"] for b in c.get("/bins").json()]
    finally:
        srv.stop()


def test_served_items_match_the_documented_models(client: httpx.Client, sessions: sessionmaker[Session],
                                                  auth: Callable[[str], dict[str, str]]) -> None:
    now = utcnow()
    fleet(sessions, now)
    bins = client.get("/bins", headers=auth("crew")).json()
    for item in bins:
        assert list(item) == list(BinOut.model_fields)
        assert BinOut.model_validate(item).model_dump(mode="json") == item
    one = client.get("/bins/MKS-BIN-0002", headers=auth("crew")).json()
    assert one == next(b for b in bins if b["id"] == "MKS-BIN-0002") | {"timeToFull_h": one["timeToFull_h"]}
    assert bins[1]["timeToFull_h"] == 0.0 and bins[2]["timeToFull_h"] == pytest.approx(5.0, abs=0.01)
    assert bins[0]["expectedFullAt"] == (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    alerts = client.get("/alerts", headers=auth("crew")).json()
    assert len(alerts) == 3
    for item in alerts:
        assert list(item) == list(AlertOut.model_fields)
        assert AlertOut.model_validate(item).model_dump(mode="json") == item


def test_a_bin_emptied_after_its_latest_reading_shows_no_level_from_before() -> None:
    """A crew emptied the bin after its newest reading (85 %): until it reports again its level is unknown,
    not "full" at 85 % (a crew saw "7 full bins" stay after emptying them)."""
    from types import SimpleNamespace
    now = utcnow()
    row = SimpleNamespace(
        id="B1", kecamatan="Wajo", kelurahan="", street="", landmark="", lat=-5.1, lon=119.4, full_threshold=None,
        report_interval_s=600, ts=now - timedelta(minutes=8), city_id="makassar", status="active",
        metrics={"fillingLevel": [0.85, to_ms(now - timedelta(minutes=8))]},
        derived={"last_emptying": (now - timedelta(minutes=3)).isoformat(), "full_at": now.isoformat()})
    entry = bin_entry(row, 0.8).render(now)
    assert (entry["fillingLevel"], entry["status"], entry["expectedFullAt"], entry["timeToFull_h"]) == \
        (None, "ok", None, None)
    row.derived["last_emptying"] = (now - timedelta(minutes=20)).isoformat()  # emptied before the reading
    entry = bin_entry(row, 0.8).render(now)
    assert (entry["fillingLevel"], entry["status"]) == (0.85, "full")
