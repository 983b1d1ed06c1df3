"""``/bins`` from SQL ``device_latest``; ``/bins/{id}/readings`` aggregated by InfluxDB; injection attempts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lorong.core import schema
from lorong.core.model import utcnow
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import DeviceRow
from tests.api.bins_data import POINTS, T0, write_points
from tests.api.seed import fleet

pytestmark = pytest.mark.integration

def test_fullest_first_with_status_and_time_to_full(client: httpx.Client, sessions: sessionmaker[Session],
                                                    auth: Callable[[str], dict[str, str]]) -> None:
    now = utcnow()
    fleet(sessions, now)
    bins = client.get("/bins", headers=auth("crew")).json()
    assert [b["id"] for b in bins] == ["MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002", "MKS-BIN-0004", "MKS-BIN-0005"]
    by = {b["id"]: b for b in bins}
    assert [by[i]["status"] for i in by] == ["full", "full", "dropped", "lidOpen", "noData"]
    assert [by[i]["stale"] for i in by] == [False, False, False, True, True]
    one = by["MKS-BIN-0001"]
    assert (one["fillingLevel"], one["distance"], one["batteryLevel"]) == (0.94, 201.0, 0.81)
    assert one["fullThreshold"] == 0.8 and by["MKS-BIN-0003"]["fullThreshold"] == 0.75
    assert one["timeToFull_h"] == 0.0 and one["fillRate_per_h"] == 0.02
    assert datetime.fromisoformat(one["dateLastEmptying"]) == now - timedelta(days=1)
    assert by["MKS-BIN-0002"]["timeToFull_h"] == pytest.approx(5.0, abs=0.01)
    assert by["MKS-BIN-0003"]["timeToFull_h"] == 0.0 and by["MKS-BIN-0003"]["expectedFullAt"] is None
    assert by["MKS-BIN-0004"]["timeToFull_h"] is None
    assert by["MKS-BIN-0005"]["fillingLevel"] is None and by["MKS-BIN-0005"]["dateObserved"] is None
    assert one["dateObserved"].endswith("Z")
    observed = datetime.fromisoformat(one["dateObserved"])
    assert abs(observed - (now - timedelta(minutes=5))) < timedelta(milliseconds=1)
    assert one["street"] == "Jl. Somba Opu" and one["kecamatan"] == "Wajo"


def test_filters_and_pages(client: httpx.Client, sessions: sessionmaker[Session],
                           auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    ids = lambda q: [b["id"] for b in client.get(f"/bins{q}", headers=auth("officer")).json()]  # noqa: E731
    assert ids("?min_level=0.8") == ["MKS-BIN-0001", "MKS-BIN-0003"]
    assert ids("?min_level=0.81") == ["MKS-BIN-0001", "MKS-BIN-0003"]  # at or above
    assert ids("?kecamatan=Tallo") == ["MKS-BIN-0003", "MKS-BIN-0005"]
    assert ids("?kecamatan=Tallo&min_level=0.9") == []
    assert ids("?limit=2&offset=1") == ["MKS-BIN-0003", "MKS-BIN-0002"]
    injected = client.get("/bins?kecamatan=" + quote("' OR 1=1 --"), headers=auth("officer"))
    assert injected.status_code == 422 and "known kecamatan: Mariso, Panakkukang" in injected.json()["detail"]
    r = client.get("/bins?min_level=1.5", headers=auth("officer"))
    assert r.status_code == 422
    assert r.json()["detail"] == "query parameter 'min_level': Input should be less than or equal to 1 (got '1.5')"
    one = client.get("/bins/MKS-BIN-0003", headers=auth("officer")).json()
    assert one["fillingLevel"] == 0.81 and one["temperature"] == 31.5
    air = client.get("/bins/MKS-AIR-01", headers=auth("officer"))
    assert air.status_code == 404 and "air station" in air.json()["detail"]


def test_readings_are_influx_means_per_bucket(client: httpx.Client, sessions: sessionmaker[Session],
                                              influx: InfluxClient, auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    write_points(influx)
    start, end = T0.isoformat(), (T0 + timedelta(hours=4)).isoformat()
    r = client.get("/bins/MKS-BIN-0001/readings", params={"start": start, "end": end, "every": "1h"},
                   headers=auth("crew"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["units"] == {"fillingLevel": "1", "distance": "mm", "batteryLevel": "1", "temperature": "degC"}
    assert (body["every"], body["aggregate"]) == ("1h", "mean")
    assert body["start"] == "2026-11-28T00:00:00Z" and body["end"] == "2026-11-28T04:00:00Z"
    got = [(x["dateObserved"], x["fillingLevel"], x["distance"]) for x in body["readings"]]
    assert got == [("2026-11-28T00:00:00Z", pytest.approx(0.3), pytest.approx(745.0)),
                   ("2026-11-28T01:00:00Z", pytest.approx(0.6), pytest.approx(490.0)),
                   ("2026-11-28T03:00:00Z", pytest.approx(0.9), pytest.approx(235.0))]  # empty hour 02 left out
    assert body["readings"][0]["batteryLevel"] is None
    half = client.get("/bins/MKS-BIN-0001/readings",
                      params={"start": (T0 + timedelta(minutes=30)).isoformat(),
                              "end": (T0 + timedelta(hours=2)).isoformat(), "every": "30m"},
                      headers=auth("crew")).json()
    assert [(x["dateObserved"][11:16], x["fillingLevel"]) for x in half["readings"]] == [
        ("00:30", 0.4), ("01:00", 0.5), ("01:30", 0.7)]
    wita = client.get("/bins/MKS-BIN-0002/readings",
                      params={"start": "2026-11-28T08:00:00+08:00", "end": "2026-11-28T09:00:00+08:00", "every": "1d"},
                      headers=auth("crew")).json()
    assert wita["start"] == "2026-11-28T00:00:00Z"
    assert [x["fillingLevel"] for x in wita["readings"]] == [0.99]


@pytest.mark.parametrize(("params", "message"), [
    ({"every": "1 hour"}, "query parameter 'every': String should match pattern"),
    ({"every": "0h"}, "query parameter 'every'"),
    ({"start": "2026-11-28T00:00:00"}, "query parameter 'start': Input should have timezone info"),
    ({"start": "2026-11-28T05:00:00Z", "end": "2026-11-28T04:00:00Z"}, "must be before end"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-11-28T00:00:00Z", "every": "1m"},
     "use an every of at least"),
    ({"start": "1900-01-01T00:00:00Z", "end": "1900-01-02T00:00:00Z"}, "is out of range"),
    ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "every": "1w"}, "at most 400 days"),
    ({"every": "999999w"}, "longer than any window"),  # InfluxDB overflowed: a 502
    ({"every": "1s"}, "use an every of at least 18 s"),  # a day in 1 s buckets (said "at least 0.00 h")
])
def test_readings_window_errors(params: dict[str, str], message: str, client: httpx.Client,
                                sessions: sessionmaker[Session], auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    r = client.get("/bins/MKS-BIN-0001/readings", params=params, headers=auth("crew"))
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def _points(influx: InfluxClient) -> int:
    series = influx.query(f'SELECT count("fillingLevel") FROM "{schema.MEASUREMENT_BIN}"')
    return int(series[0].values[0][1])


@pytest.mark.parametrize("device_id", [
    "'; DROP DATABASE x", "MKS-BIN-0001' OR '1'='1", 'MKS-BIN-0001" OR 1=1', "MKS-BIN-0001\\'",
    "x'; DROP MEASUREMENT waste_container; --", "MKS-BIN-0001 ", ".hidden", "a" * 65])
def test_injection_in_device_id_is_refused(device_id: str, client: httpx.Client, sessions: sessionmaker[Session],
                                           influx: InfluxClient, auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    write_points(influx)
    for prefix in ("/bins", "/air/stations"):
        r = client.get(f"{prefix}/{quote(device_id, safe='')}/readings", headers=auth("admin"))
        assert 400 <= r.status_code < 500, (prefix, r.status_code, r.text)
        assert r.json()["detail"]
    assert client.delete(f"/devices/{quote(device_id, safe='')}", headers=auth("admin")).status_code in (404, 422)
    assert _points(influx) == len(POINTS)
    assert influx.database in {row[0] for s in influx.query("SHOW DATABASES") for row in s.values}
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DeviceRow)) == 7


@pytest.mark.parametrize("params", [
    {"every": f"1h) fill(none); DROP DATABASE \"{'{db}'}\"; --"}, {"every": "1h);DROP DATABASE x"},
    {"start": "now() - 1d; DROP DATABASE x"}, {"end": "2026-11-28T00:00:00Z' OR '1'='1"}])
def test_injection_in_query_params_is_refused(params: dict[str, str], client: httpx.Client, influx: InfluxClient,
                                              sessions: sessionmaker[Session],
                                              auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    write_points(influx)
    params = {k: v.replace("{db}", influx.database) for k, v in params.items()}
    r = client.get("/bins/MKS-BIN-0001/readings", params=params, headers=auth("admin"))
    assert r.status_code == 422, r.text
    assert _points(influx) == len(POINTS)
    ok = client.get("/bins/MKS-BIN-0001/readings", headers=auth("admin"),
                    params={"start": T0.isoformat(), "end": (T0 + timedelta(hours=4)).isoformat()})
    assert len(ok.json()["readings"]) == 3
