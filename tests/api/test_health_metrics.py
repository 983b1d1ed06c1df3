"""``/health``, ``/metrics``, the error map and the crew page's static files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.core.settings import InfluxSettings, MqttSettings
from lorong.storage import stack
from tests.api.conftest import serve
from tests.api.seed import fleet

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[tuple[str, str], float]:
    """``{(name, "k=v,k=v"): value}`` with labels sorted by key."""
    return {(s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_health_ok_and_degraded(make_settings: Callable[..., Any], influx: Any, mosquitto: stack.Service,
                                tokens: dict[str, str]) -> None:
    officer = {"Authorization": f"Bearer {tokens['officer']}"}
    up = serve(make_settings(mqtt_port=mosquitto.port, influx=influx))
    try:
        body = httpx.get(f"{up.url}/health", headers=officer).json()
        assert body["status"] == "ok" and body["broker"]["ok"] and body["influxdb"]["ok"] and body["database"]["ok"]
    finally:
        up.stop()
    dead = stack.free_port()
    down = serve(make_settings(mqtt=MqttSettings(port=dead), influx=InfluxSettings(url=f"http://127.0.0.1:{dead}")))
    try:
        r = httpx.get(f"{down.url}/health", headers=officer)
        body = r.json()
        assert r.status_code == 503 and body["status"] == "degraded"
        assert (body["broker"]["ok"], body["influxdb"]["ok"], body["database"]["ok"]) == (False, False, True)
        assert f"127.0.0.1:{dead}" in body["broker"]["detail"]
    finally:
        down.stop()


def test_influx_down_is_a_503_with_advice(make_settings: Callable[..., Any], sessions: sessionmaker[Session],
                                          tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    srv = serve(make_settings(influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}", timeout_s=2)))
    try:
        r = httpx.get(f"{srv.url}/bins/MKS-BIN-0001/readings", headers={"Authorization": f"Bearer {tokens['crew']}"})
        assert r.status_code == 503
        assert r.json() == {"detail": "the time-series database is not answering; try again in a minute"}
        ok = httpx.get(f"{srv.url}/bins", headers={"Authorization": f"Bearer {tokens['crew']}"})
        assert ok.status_code == 200  # latest values come from SQL, not InfluxDB
    finally:
        srv.stop()


def test_metrics(client: httpx.Client, sessions: sessionmaker[Session], auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    for _ in range(3):
        client.get("/bins", headers=auth("crew"))
    client.get("/bins/MKS-BIN-0001", headers=auth("crew"))
    client.get("/bins/MKS-BIN-0002", headers=auth("crew"))
    client.get("/alerts")
    client.post("/alerts/1/ack", headers=auth("crew"))
    client.get("/no/such/path")
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = _samples(r.text)
    assert got[("lorong_api_requests_total", "method=GET,route=/bins,status=200")] == 3
    assert got[("lorong_api_requests_total", "method=GET,route=/bins/{device_id},status=200")] == 2
    assert got[("lorong_api_requests_total", "method=GET,route=/alerts,status=401")] == 1
    assert got[("lorong_api_requests_total", "method=GET,route=unmatched,status=404")] == 1
    assert got[("lorong_api_request_duration_seconds_count", "method=GET,route=/bins")] == 3
    assert got[("lorong_api_request_duration_seconds_bucket", "le=+Inf,method=GET,route=/bins")] == 3
    assert got[("lorong_alerts_active", "acknowledged=false,severity=major,type=bin_full")] == 1
    assert got[("lorong_alerts_active", "acknowledged=true,severity=major,type=bin_full")] == 1
    assert got[("lorong_alerts_active", "acknowledged=false,severity=major,type=pm25_high")] == 1
    assert got[("lorong_devices", "kind=bin,status=active")] == 5
    assert got[("lorong_devices", "kind=air,status=active")] == 2


def test_error_bodies(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    r = client.get("/no/such/path")
    assert r.status_code == 404 and r.json() == {"detail": "no such path: see /docs for the API's paths"}
    r = client.put("/bins", headers=auth("admin"))
    assert r.status_code == 405 and r.headers["allow"] == "GET" and "HTTP method" in r.json()["detail"]
    r = client.get("/alerts?limit=abc&status=open", headers=auth("crew"))
    assert r.status_code == 422
    assert r.json()["detail"] == ("query parameter 'status': Input should be 'active', 'cleared' or 'any' "
                                  "(got 'open'); query parameter 'limit': Input should be a valid integer, "
                                  "unable to parse string as an integer (got 'abc')")
    assert r.json()["errors"] == [{"loc": ["query", "status"], "msg": "Input should be 'active', 'cleared' or 'any'"},
                                  {"loc": ["query", "limit"],
                                   "msg": "Input should be a valid integer, unable to parse string as an integer"}]


def test_crew_page_and_assets(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="id">' in page.text and "/web/app.js" in page.text
    for path, kind in (("/web/app.js", "javascript"), ("/web/app.css", "text/css"),
                       ("/web/vendor/leaflet/leaflet.js", "javascript"), ("/web/vendor/leaflet/leaflet.css", "css"),
                       ("/web/vendor/leaflet/images/marker-icon.png", "image/png")):
        r = client.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], path
    with client.stream("GET", "/web/vendor/leaflet/leaflet.js", headers={"Accept-Encoding": "gzip"}) as gz:
        assert gz.headers["content-encoding"] == "gzip"
        assert len(b"".join(gz.iter_raw())) < 50_000  # 147 kB minified -> ~43 kB on a slow phone link
    assert "BSD 2-Clause" in (client.get("/web/vendor/leaflet/LICENSE").text)
    docs = client.get("/openapi.json").json()
    assert docs["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer",
        "description": "API token from `lorong api token create`, sent as `Authorization: Bearer <token>`"}


def test_huge_bodies_and_inputs_get_short_errors(client: Any, tokens: Any) -> None:
    """A 2 MB body is refused with 413 before it is read; a long bad id gets a short 422 message."""
    headers = {"Authorization": f"Bearer {tokens['technician']}", "Content-Type": "application/json"}
    big = client.post("/devices", content=b'{"id": "' + b"x" * 2_000_000 + b'", "kind": "bin"}', headers=headers)
    assert big.status_code == 413 and "over the limit" in big.json()["detail"]
    long_id = client.post("/devices", json={"id": "é" * 5000, "kind": "bin"}, headers=headers)
    assert long_id.status_code == 422
    assert len(long_id.content) < 2000
