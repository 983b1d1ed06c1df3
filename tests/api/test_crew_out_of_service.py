"""Bins taken out of service (registry ``status`` ``in_stock`` or ``maintenance``, as the demo does when
it runs fewer bins) are no live bins (a new user's report, item 3): ``GET /bins`` lists active bins
unless asked (``device_status``), crew actions on them are 409, and neither a new plan nor an earlier
one sends a truck to them. Real registry, the real API and the real ``lorong analytics route``."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from analytics.cli import app
from api.routes.collection import today_wita
from devices.registry import DeviceUpdate, update_device
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.tables import AlertRow, CollectionRow, RoutePlanRow
from tests.api.conftest import bearer, serve
from tests.api.seed import add_bin, add_route, set_latest

pytestmark = pytest.mark.integration

BINS = ("ON-1", "STOCK-1", "REPAIR-1")


def test_out_of_service_bins_are_not_live_bins(settings: Settings, sessions: sessionmaker[Session],
                                               tokens: dict[str, str], db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    with sessions.begin() as s:
        for n, dev in enumerate(BINS):
            add_bin(s, dev, lat=-5.13 + n * 0.002, capacity_l=240)
            set_latest(s, dev, now - timedelta(minutes=2), fillingLevel=0.9)
        # planned this morning, while all three were in service
        add_route(s, today_wita(now), 0, {"stops": [{"device_id": d} for d in BINS], "depot": [-5.14, 119.42]},
                  1.0, now - timedelta(hours=1))
    with sessions.begin() as s:  # then two are taken out of service
        update_device(s, "STOCK-1", DeviceUpdate(status="in_stock"))
        update_device(s, "REPAIR-1", DeviceUpdate(status="maintenance"))
    crew = bearer(tokens["crew"])
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            live = client.get("/bins", headers=crew)
            stock = client.get("/bins", params={"device_status": "in_stock"}, headers=crew)
            every = client.get("/bins", params={"device_status": "all"}, headers=crew)
            bad = client.get("/bins", params={"device_status": "broken"}, headers=crew)
            planned = client.get("/routes", headers=crew)
            cant = client.post("/bins/STOCK-1/cant-empty", json={"reason": "not_found"}, headers=crew)
            emptied = client.post("/bins/REPAIR-1/emptied", headers=crew)
            ok = client.post("/bins/ON-1/emptied", headers=crew)
    finally:
        srv.stop()
    assert [b["id"] for b in live.json()] == ["ON-1"]
    assert [(b["id"], b["deviceStatus"]) for b in stock.json()] == [("STOCK-1", "in_stock")]
    assert sorted((b["id"], b["deviceStatus"]) for b in every.json()) == [
        ("ON-1", "active"), ("REPAIR-1", "maintenance"), ("STOCK-1", "in_stock")]
    assert bad.status_code == 422
    assert [[st["id"] for st in r["stops"]] for r in planned.json()] == [["ON-1"]]
    assert cant.status_code == 409 and cant.json()["detail"] == (
        "bin STOCK-1 is out of service (status in_stock): only an active bin can be emptied or reported")
    assert emptied.status_code == 409 and "REPAIR-1 is out of service (status maintenance)" in emptied.json()["detail"]
    assert ok.status_code == 200
    with sessions() as s:
        assert [r.device_id for r in s.scalars(select(AlertRow))] == []
        assert [r.device_id for r in s.scalars(select(CollectionRow))] == ["ON-1"]
    # a new plan leaves them out too
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    with sessions.begin() as s:
        s.execute(RoutePlanRow.__table__.delete())  # all three still read 0.9, over the 0.8 threshold
    result = CliRunner().invoke(app, ["route", "--depot", "-5.14,119.42", "--vehicles", "1", "--capacity", "1000",
                                      "--time-limit", "0.3"])
    assert result.exit_code == 0, result.output
    with sessions() as s:
        assert [[st["device_id"] for st in p.stops["stops"]] for p in s.scalars(select(RoutePlanRow))] == [["ON-1"]]
