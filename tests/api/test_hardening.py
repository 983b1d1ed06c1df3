"""Hardening of the API against what faults and an attacker found (issue 14): each test first
reproduced the fault against the real app served by uvicorn on a real SQLite database."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.api.conftest import bearer, serve
from tests.api.seed import fleet

pytestmark = pytest.mark.integration


def test_cursor_with_huge_integer_is_refused(client: httpx.Client, sessions: sessionmaker[Session],
                                             auth: Callable[[str], dict[str, str]]) -> None:
    """Item 19: an id past SQLite's 64-bit integers reached the query and raised OverflowError (500)."""
    fleet(sessions, utcnow())
    for alert_id in (2**63, 10**30, -(2**63) - 1):
        raw = f'["2026-11-28T02:00:00+00:00",{alert_id}]'.encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        for status in ("any", "cleared", "active"):
            r = client.get("/alerts", params={"cursor": cursor, "status": status}, headers=auth("crew"))
            assert r.status_code == 422, (alert_id, status, r.text)
            assert "start again without a cursor" in r.json()["detail"]


def test_kecamatan_filter_ignores_case_and_names_the_known_ones(
        client: httpx.Client, sessions: sessionmaker[Session], auth: Callable[[str], dict[str, str]]) -> None:
    """Item 28: ``?kecamatan=tamalate`` answered ``[]`` although the registry has ``Tamalate``."""
    fleet(sessions, utcnow())
    crew, tech = auth("crew"), auth("technician")
    assert [s["id"] for s in client.get("/air/stations?kecamatan=tamalate", headers=crew).json()] == ["MKS-AIR-02"]
    assert [b["id"] for b in client.get("/bins?kecamatan=WAJO", headers=crew).json()] == [
        "MKS-BIN-0001", "MKS-BIN-0002"]
    assert [a["device_id"] for a in client.get("/alerts?kecamatan=tallo", headers=crew).json()] == ["MKS-BIN-0003"]
    assert [d["id"] for d in client.get("/devices?kecamatan=mariso", headers=tech).json()] == ["MKS-BIN-0004"]
    # a kecamatan with no bins but a station is known: an empty list, not an error
    assert client.get("/bins?kecamatan=panakkukang", headers=crew).json() == []
    for path, headers in (("/bins", crew), ("/air/stations", crew), ("/alerts", crew), ("/devices", tech)):
        r = client.get(path, params={"kecamatan": "Tamalanrea"}, headers=headers)
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"]
        assert "query parameter 'kecamatan'" in detail and "'Tamalanrea'" in detail, detail
        assert "Mariso, Panakkukang, Tallo, Tamalate, Wajo" in detail, detail


def test_device_filter_ignores_case_and_refuses_an_unknown_device(
        client: httpx.Client, sessions: sessionmaker[Session], auth: Callable[[str], dict[str, str]]) -> None:
    """Item 28 on ``/alerts?device_id=``: ``mks-bin-0001`` (the registry has ``MKS-BIN-0001``) and a device
    that does not exist both answered ``[]``, as if the bin had no alert."""
    fleet(sessions, utcnow())
    crew = auth("crew")
    for asked in ("MKS-BIN-0001", "mks-bin-0001"):
        r = client.get("/alerts", params={"device_id": asked, "status": "any"}, headers=crew)
        assert [a["device_id"] for a in r.json()] == ["MKS-BIN-0001"], (asked, r.text)
    r = client.get("/alerts", params={"device_id": "MKS-BIN-0002"}, headers=crew)  # registered, no alert
    assert r.status_code == 200 and r.json() == [], r.text
    r = client.get("/alerts", params={"device_id": "MKS-BIN-9999"}, headers=crew)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "query parameter 'device_id': no device 'MKS-BIN-9999' in the registry", r.text


def _label_values(text: str, metric: str, label: str) -> set[str]:
    """Values of ``label`` across the samples of ``metric`` in a Prometheus text page."""
    pattern = re.compile(rf'^{metric}\{{[^}}]*\b{label}="([^"]*)"', re.M)
    return set(pattern.findall(text))


def test_metrics_labels_stay_bounded(client: httpx.Client) -> None:
    """Item 17: every made-up method became a new label value (/metrics grew to megabytes)."""
    for i in range(40):
        client.request(f"X{i:03d}", f"/no/such/path/{i}")
        client.request("GET", f"/made-up-{i}?q={i}")
        client.request(f"PROP{i}", "/health")
        client.get(f"/bins/MKS-BIN-{i:04d}/readings")  # ids in a path are one template, not a label each
        client.get(f"/web/no-such-{i}.js")
        client.delete(f"/alerts/{i}/ack")  # a known path, a method it does not take (405)
    client.get("/health")
    client.post("/health")
    page = client.get("/metrics").text
    methods = _label_values(page, "lorong_api_requests_total", "method")
    assert methods == {"GET", "POST", "DELETE", "other"}, methods
    assert _label_values(page, "lorong_api_request_duration_seconds_bucket", "method") == methods
    routes = _label_values(page, "lorong_api_requests_total", "route")
    assert routes == {"/health", "unmatched", "/bins/{device_id}/readings", "/alerts/{alert_id}/ack"}, routes
    statuses = _label_values(page, "lorong_api_requests_total", "status")
    assert statuses <= {"200", "404", "405", "400", "501", "503"}, statuses
    assert len(page.encode()) < 60_000, len(page.encode())


def test_health_is_minimal_without_a_token_and_the_broker_log_does_not_grow(
        make_settings: Callable[..., Settings], influx: InfluxClient, mosquitto: stack.Service,
        tokens: dict[str, str]) -> None:
    """Item 22: ``/health`` showed internal addresses to anyone and wrote broker log lines on every call."""
    srv = serve(make_settings(mqtt_port=mosquitto.port, influx=influx))
    log = mosquitto.workdir / "mosquitto.log"
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            first = c.get("/health")
            time.sleep(0.3)  # the broker has logged the first probe, if any
            before = log.stat().st_size
            for i in range(50):
                r = c.get("/health", headers=bearer(tokens["officer"]) if i % 2 else {})
                assert r.status_code == 200, r.text
            time.sleep(0.3)
            grown = log.stat().st_size - before
            assert grown == 0, log.read_text()[-500:]
            assert first.status_code == 200 and first.json() == {"status": "ok"}
            assert str(mosquitto.port) not in first.text and "127.0.0.1" not in first.text
            full = c.get("/health", headers=bearer(tokens["officer"])).json()
            assert full["broker"] == {"ok": True, "detail": f"127.0.0.1:{mosquitto.port}"}
            assert full["influxdb"]["ok"] and full["database"] == {"ok": True, "detail": "sqlite"}
            assert c.get("/health", headers=bearer("lrg_forged")).status_code == 401
    finally:
        srv.stop()
