"""What the API refuses with a 422 that says why: malformed JSON, over-long device text, unknown
filter values and unknown query parameters."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.registry import TEXT_MAX
from lorong.storage.tables import DeviceRow
from tests.api.seed import add_bin

pytestmark = pytest.mark.integration

DEVICE = {"id": "MKS-BIN-0900", "kind": "bin", "kecamatan": "Wajo", "street": "Jl. Nusantara", "depth_mm": 1000}


def _devices(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(DeviceRow)) or 0)


def test_device_text_fields_have_a_length_limit(client: httpx.Client, auth: Callable[[str], dict[str, str]],
                                                sessions: sessionmaker[Session]) -> None:
    tech = auth("technician")
    for field in ("street", "kelurahan", "kecamatan", "model", "firmware", "installed_by"):
        r = client.post("/devices", json={**DEVICE, field: "x" * (TEXT_MAX[field] + 1)}, headers=tech)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["detail"].startswith(f"body field '{field}': String should have at most {TEXT_MAX[field]}")
    r = client.post("/devices", json={**DEVICE, "waste_kind": "x" * 300}, headers=tech)
    assert r.status_code == 422 and "waste_kind must be one of organik, anorganik, campuran" in r.json()["detail"]
    assert _devices(sessions) == 0
    r = client.post("/devices", json={**DEVICE, "street": "x" * TEXT_MAX["street"]}, headers=tech)
    assert r.status_code == 201 and r.json()["street"] == "x" * TEXT_MAX["street"]
    r = client.patch("/devices/MKS-BIN-0900", json={"street": "y" * (TEXT_MAX["street"] + 1)}, headers=tech)
    assert r.status_code == 422 and "body field 'street'" in r.json()["detail"]


def test_malformed_json_names_the_position(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    body = b'{"id": "MKS-BIN-0900", oops}'
    r = client.post("/devices", content=body, headers={**auth("technician"), "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == ("request body is not valid JSON (at character 23: Expecting property name "
                                  "enclosed in double quotes)")
    assert r.json()["errors"] == [{"loc": ["body"], "msg": r.json()["detail"].removeprefix("request body ")}]


@pytest.mark.parametrize(("path", "name", "allowed"), [
    ("/alerts?type=bogus", "type", "bin_full, bin_full_soon, fire"),
    ("/alerts?status=bogus", "status", "'active', 'cleared' or 'any'"),
    ("/alerts?severity=bogus", "severity", "'critical', 'major', 'minor' or 'warning'"),
    ("/devices?status=bogus", "status", "in_stock, active, maintenance, retired"),
    ("/devices?kind=bogus", "kind", "'bin' or 'air'"),
])
def test_unknown_filter_values_are_refused(client: httpx.Client, auth: Callable[[str], dict[str, str]],
                                           path: str, name: str, allowed: str) -> None:
    r = client.get(path, headers=auth("officer"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"query parameter '{name}': ") and allowed in detail and "'bogus'" in detail


def test_unknown_query_parameters_are_refused(client: httpx.Client, auth: Callable[[str], dict[str, str]],
                                              sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_bin(s, "MKS-BIN-0001")
    r = client.get("/bins/MKS-BIN-0001/readings?metric=bogus", headers=auth("officer"))
    assert r.status_code == 422
    assert r.json()["detail"] == "query parameter 'metric' is not known here; this path takes start, end, every"
    r = client.get("/alerts?kecamatn=Wajo&limit=5", headers=auth("officer"))
    assert r.status_code == 422 and r.json()["detail"].startswith("query parameter 'kecamatn' is not known here; "
                                                                   "this path takes status, type, severity")
    assert client.get("/alerts?type=bin_full&limit=5", headers=auth("officer")).status_code == 200
    assert client.get("/alerts?_=1764000000&limit=5", headers=auth("officer")).status_code == 200  # cache-buster
    assert client.get("/health").status_code in (200, 503)
