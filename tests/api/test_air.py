"""``/air/stations``: latest values, ISPU and US AQI from ``device_latest``; readings from InfluxDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from lorong.core import schema
from lorong.core.model import to_ms, utcnow
from lorong.storage.influx import InfluxClient, line
from tests.api.seed import add_station, fleet

pytestmark = pytest.mark.integration


def test_stations_worst_first_with_indices(client: httpx.Client, sessions: sessionmaker[Session],
                                           auth: Callable[[str], dict[str, str]]) -> None:
    now = utcnow()
    fleet(sessions, now)
    with sessions.begin() as s:
        add_station(s, "MKS-AIR-03", "Ujung Tanah")  # never heard from
    stations = client.get("/air/stations", headers=auth("officer")).json()
    assert [s["id"] for s in stations] == ["MKS-AIR-01", "MKS-AIR-02", "MKS-AIR-03"]
    one, two, three = stations
    assert (one["pm25"], one["pm10"], one["ispu"], one["usAqi"]) == (70.0, 90.0, 158, 158)
    assert (one["ispuCategory"], one["usAqiCategory"], one["criticalPollutant"]) == ("tidak_sehat", "unhealthy", "pm25")
    # ISPU 43.2 stored unrounded: reported 43, category from the index (P.14/2020: 0-50 Baik); US 57 Moderate
    assert (two["ispu"], two["ispuCategory"], two["usAqi"], two["usAqiCategory"]) == (43, "baik", 57, "moderate")
    assert two["criticalPollutant"] == "pm25" and two["stale"] is False
    assert three["ispu"] is None and three["ispuCategory"] is None and three["stale"] is True
    # the indices come from the humidity-corrected 24-hour mean, not the latest reading: the response says
    # which (a new user read ISPU 74 beside pm25 28.4, whose own ISPU is 67); the 1-hour mean is pm25_high's
    assert (one["pm25_1h"], one["pm25_24h"], one["aqiHours"], one["aqiComplete"]) == (63.5, 68.0, 22, True)
    assert (two["pm25_24h"], two["aqiHours"], two["aqiComplete"]) == (None, None, None)
    assert [s["id"] for s in client.get("/air/stations?kecamatan=Tamalate", headers=auth("crew")).json()] == [
        "MKS-AIR-02"]
    assert client.get("/air/stations/MKS-AIR-01", headers=auth("crew")).json()["ispu"] == 158
    r = client.get("/air/stations/MKS-BIN-0001", headers=auth("crew"))
    assert r.status_code == 404 and "is a bin" in r.json()["detail"]


def test_station_readings(client: httpx.Client, sessions: sessionmaker[Session], influx: InfluxClient,
                          auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    t0 = datetime(2026, 11, 28, 6, tzinfo=UTC)
    influx.write_lines([
        line(schema.MEASUREMENT_AIR, {"device_id": "MKS-AIR-01"}, {"pm25": 80.0, "pm10": 100.0, "temperature": 29.0},
             to_ms(t0 + timedelta(minutes=5))),
        line(schema.MEASUREMENT_AIR, {"device_id": "MKS-AIR-01"}, {"pm25": 60.0, "relativeHumidity": 0.7},
             to_ms(t0 + timedelta(minutes=25))),
        line(schema.MEASUREMENT_AIR, {"device_id": "MKS-AIR-02"}, {"pm25": 5.0}, to_ms(t0 + timedelta(minutes=5))),
    ])
    r = client.get("/air/stations/MKS-AIR-01/readings", headers=auth("officer"),
                   params={"start": t0.isoformat(), "end": (t0 + timedelta(hours=1)).isoformat(), "every": "1h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["units"]["pm25"] == "ug/m3" and body["units"]["relativeHumidity"] == "1"
    [bucket] = body["readings"]
    assert bucket["dateObserved"] == "2026-11-28T06:00:00Z"
    assert (bucket["pm25"], bucket["pm10"], bucket["temperature"], bucket["relativeHumidity"]) == (70.0, 100.0, 29.0,
                                                                                                   0.7)
    assert bucket["co2"] is None
    r = client.get("/air/stations/MKS-BIN-0001/readings", headers=auth("officer"))
    assert r.status_code == 404
