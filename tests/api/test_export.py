"""``GET /export/readings``: officers and admins only, streamed CSV and Parquet equal to what was written."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_token
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, line

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
HOURS = 30


def seed(influx: InfluxClient) -> list[list[str]]:
    """One bin point an hour; returns the expected CSV rows."""
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "MKS-BIN-0001", schema.TAG_KECAMATAN: "@Wajo"},
                             {schema.FIELD_FILL: i / 100}, to_ms(T0 + timedelta(hours=i))) for i in range(HOURS)])
    return [[(T0 + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "MKS-BIN-0001", "", "'@Wajo", "bin",
             "fillingLevel", repr(i / 100), "1"] for i in range(HOURS)]


def params(**kw: str) -> dict[str, str]:
    return {"from": T0.isoformat(), "to": (T0 + timedelta(days=2)).isoformat(), **kw}


@pytest.mark.parametrize("role", ["crew", "technician", "supervisor"])
def test_other_roles_may_not_export(role: str, client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    r = client.get("/export/readings", params=params(), headers=auth(role))
    assert r.status_code == 403
    assert r.json()["detail"].endswith("it needs a token with role officer, admin")


def test_no_token_is_401(client: httpx.Client) -> None:
    assert client.get("/export/readings", params=params()).status_code == 401


@pytest.mark.parametrize("role", ["officer", "admin"])
def test_csv_is_streamed_and_equals_what_was_written(role: str, client: httpx.Client, influx: InfluxClient,
                                                      auth: Callable[[str], dict[str, str]]) -> None:
    want = seed(influx)
    with client.stream("GET", "/export/readings", params=params(city="makassar"), headers=auth(role)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert r.headers["content-disposition"].startswith('attachment; filename="lorong-readings-')
        assert r.headers["lorong-city-filter"].startswith("ignored")
        body = r.read().decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows == [["time", "device_id", "city", "kecamatan", "kind", "metric", "value", "unit"], *want]


def register(sessions: sessionmaker[Session]) -> None:
    """The seeded bin, and a bin in Tallo that sent nothing."""
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-BIN-0001", kind="bin", kecamatan="@Wajo", depth_mm=1000))
        add_device(s, DeviceIn(id="MKS-BIN-0002", kind="bin", kecamatan="Tallo", depth_mm=1000))


def test_parquet(client: httpx.Client, influx: InfluxClient, auth: Callable[[str], dict[str, str]],
                 sessions: sessionmaker[Session]) -> None:
    seed(influx)
    register(sessions)
    r = client.get("/export/readings", params=params(format="parquet", kecamatan="@Wajo"), headers=auth("officer"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert [(x["time"], x["value"], x["kecamatan"]) for x in table] == [
        (T0 + timedelta(hours=i), i / 100, "@Wajo") for i in range(HOURS)]  # typed cells stay as stored
    other = client.get("/export/readings", params=params(kecamatan="Tallo"), headers=auth("officer"))
    # registered, no readings
    assert other.text.splitlines() == ["time,device_id,city,kecamatan,kind,metric,value,unit"]


def test_a_token_with_an_area_exports_its_area_only(client: httpx.Client, influx: InfluxClient,
                                                    sessions: sessionmaker[Session]) -> None:
    """An officer token of Tallo exported every kecamatan's readings (and Wajo's when asked), while it got
    a 403 for a Wajo bin: now its export holds its area's readings, and another kecamatan is a 403."""
    seed(influx)
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "MKS-BIN-0002", schema.TAG_KECAMATAN: "Tallo"},
                             {schema.FIELD_FILL: 0.5}, to_ms(T0 + timedelta(hours=1)))])
    register(sessions)
    with sessions.begin() as s:
        secret = create_token(s, "off-tallo", "officer", area=["Tallo"])[1]
    mine = {"Authorization": f"Bearer {secret}"}
    r = client.get("/export/readings", params=params(), headers=mine)
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))[1:]
    assert [(x[1], x[3], x[6]) for x in rows] == [("MKS-BIN-0002", "Tallo", "0.5")]
    assert client.get("/export/readings", params=params(kecamatan="tallo"), headers=mine).status_code == 200
    other = client.get("/export/readings", params=params(kecamatan="@Wajo"), headers=mine)
    assert other.status_code == 403 and "outside this token's area (Tallo)" in other.json()["detail"]


def test_an_unknown_kecamatan_is_422_naming_the_known_ones(client: httpx.Client, influx: InfluxClient,
                                                          auth: Callable[[str], dict[str, str]],
                                                          sessions: sessionmaker[Session]) -> None:
    """It was a 200 and an empty file, as if the kecamatan had no readings."""
    seed(influx)
    register(sessions)
    r = client.get("/export/readings", params=params(kecamatan="nowhere"), headers=auth("officer"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("query parameter 'kecamatan': no device is in 'nowhere'; "
                                  "known kecamatan: @Wajo, Tallo")
    r = client.get("/export/readings", params=params(kecamatan="tallo"), headers=auth("officer"))
    assert r.status_code == 200 and r.text.startswith("time,")  # spelled without case, as /devices takes it


def test_an_unknown_city_is_422_naming_the_known_ones(client: httpx.Client, influx: InfluxClient,
                                                      auth: Callable[[str], dict[str, str]]) -> None:
    """``city=surabaya`` (or ``JAKARTA`` where no Jakarta is registered) was a 200 with only the header."""
    seed(influx)
    for city in ("surabaya", "JAKARTA"):
        r = client.get("/export/readings", params=params(city=city), headers=auth("officer"))
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == f"query parameter 'city': no city {city!r} in the registry; known cities: makassar"
    r = client.get("/export/readings", params=params(city="Makassar"), headers=auth("officer"))
    assert r.status_code == 200 and len(r.text.splitlines()) == HOURS + 1  # a city id is matched without case


def test_bad_requests(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    h = auth("officer")
    year_ago = datetime.now(UTC) - timedelta(days=365)
    cases = [
        (params(format="xlsx"), 422, "format"),
        ({"from": T0.isoformat(), "to": T0.isoformat()}, 422, "must be before"),
        ({"from": "2020-01-01T00:00:00+00:00", "to": "2022-01-01T00:00:00+00:00"}, 422, "at most 400 days"),
        ({"from": year_ago.isoformat(), "to": T0.isoformat()}, 422, "resolution=hourly"),
        ({"from": year_ago.isoformat(), "to": T0.isoformat(), "resolution": "hourly"}, 409,
         "lorong storage retention apply"),
    ]
    for p, status, text in cases:
        r = client.get("/export/readings", params=p, headers=h)
        assert (r.status_code, text in r.json()["detail"]) == (status, True), (p, r.text)
