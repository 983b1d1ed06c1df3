"""``/devices``: CRUD for technicians on the real registry."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.tables import DeviceCredentialRow, DeviceRow

pytestmark = pytest.mark.integration

EM310 = {"id": "24e124713b0000a1", "kind": "bin", "model": "EM310-UDL", "codec": "milesight-em310-udl",
         "lat": -5.1102, "lon": 119.4221, "kecamatan": "Tallo", "kelurahan": "Kaluku Bodoa",
         "street": "Jl. Sunu", "depth_mm": 2500, "blind_zone_mm": 200, "capacity_l": 660, "waste_kind": "campuran",
         "installed_at": "2026-11-01T09:30:00+08:00", "installed_by": "tech-andi"}


def test_create_read_change_retire(client: httpx.Client, sessions: sessionmaker[Session],
                                   auth: Callable[[str], dict[str, str]]) -> None:
    tech = auth("technician")
    r = client.post("/devices", json=EM310, headers=tech)
    assert r.status_code == 201, r.text
    dev = r.json()
    assert dev["id"] == "24E124713B0000A1"  # DevEUIs are stored upper case
    assert dev["depth_mm"] == 2500 and dev["blind_zone_mm"] == 200 and dev["status"] == "active"
    assert dev["installed_at"] == "2026-11-01T01:30:00Z"  # stored and returned in UTC, with its offset
    assert dev["created_at"].endswith("Z")

    got = client.get("/devices/24e124713b0000a1", headers=auth("officer"))
    assert got.json()["street"] == "Jl. Sunu"
    again = client.post("/devices", json=EM310, headers=tech)
    assert again.status_code == 409 and "already registered" in again.json()["detail"]

    r = client.patch("/devices/24E124713B0000A1", json={"depth_mm": 2400, "codec": None, "status": "maintenance"},
                     headers=tech)
    assert r.status_code == 200, r.text
    assert (r.json()["depth_mm"], r.json()["codec"], r.json()["status"]) == (2400, None, "maintenance")
    assert r.json()["street"] == "Jl. Sunu"  # untouched fields stay

    with sessions.begin() as s:
        s.add(DeviceCredentialRow(device_id="24E124713B0000A1", username="24E124713B0000A1", password_hash="x",
                                  topic="t", created_at=utcnow()))
    r = client.delete("/devices/24E124713B0000A1", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "retired"
    with sessions() as s:
        cred = s.scalars(select(DeviceCredentialRow)).one()
        assert cred.revoked_at is not None
    assert client.get("/devices", headers=tech).json() == []
    assert [d["id"] for d in client.get("/devices?status=retired", headers=tech).json()] == ["24E124713B0000A1"]
    r = client.patch("/devices/24E124713B0000A1", json={"street": "x"}, headers=tech)
    assert r.status_code == 409 and "retired" in r.json()["detail"]
    assert client.delete("/devices/24E124713B0000A1", headers=tech).status_code == 200  # idempotent


def test_list_filters(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    tech = auth("technician")
    for body in ({"id": "MKS-BIN-0002", "kind": "bin", "kecamatan": "Wajo", "depth_mm": 1000},
                 {"id": "MKS-BIN-0001", "kind": "bin", "kecamatan": "Tallo", "depth_mm": 1000},
                 {"id": "MKS-AIR-01", "kind": "air", "kecamatan": "Wajo"}):
        assert client.post("/devices", json=body, headers=tech).status_code == 201
    ids = lambda q: [d["id"] for d in client.get(f"/devices{q}", headers=tech).json()]  # noqa: E731
    assert ids("") == ["MKS-AIR-01", "MKS-BIN-0001", "MKS-BIN-0002"]
    assert ids("?kind=bin") == ["MKS-BIN-0001", "MKS-BIN-0002"]
    assert ids("?kecamatan=Wajo") == ["MKS-AIR-01", "MKS-BIN-0002"]
    assert ids("?kind=air&kecamatan=Tallo") == []
    assert client.get("/devices?kind=drone", headers=tech).status_code == 422


def test_bad_devices_get_clear_422(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    tech = auth("technician")
    r = client.post("/devices", json={"id": "bad id!", "kind": "bin"}, headers=tech)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("body field 'id': bad device id 'bad id!'")
    r = client.post("/devices", json={"id": "B1", "kind": "bin", "depth_mm": -5, "colour": "red"}, headers=tech)
    detail = r.json()["detail"]
    assert "body field 'depth_mm': Input should be greater than 0 (got -5)" in detail
    assert "body field 'colour': is not a known field" in detail
    assert {tuple(e["loc"]) for e in r.json()["errors"]} == {("body", "depth_mm"), ("body", "colour")}
    r = client.post("/devices", json={"kind": "bin"}, headers=tech)
    assert r.json()["detail"] == "body field 'id': is required"
    r = client.patch("/devices/B1", json={"id": "B2"}, headers=tech)
    assert r.status_code == 422
    r = client.patch("/devices/NOPE", json={"street": "x"}, headers=tech)
    assert r.status_code == 404 and r.json()["detail"] == "no device 'NOPE' in the registry"
    r = client.post("/devices", content=b"{not json", headers={**tech, "Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    with_status = client.post("/devices", json={"id": "B3", "kind": "bin", "status": "lost"}, headers=tech)
    assert "status must be one of in_stock, active, maintenance, retired" in with_status.json()["detail"]


def test_unknown_device_404(client: httpx.Client, auth: Callable[[str], dict[str, str]],
                           sessions: sessionmaker[Session]) -> None:
    r = client.get("/devices/MKS-BIN-9999", headers=auth("officer"))
    assert r.status_code == 404 and r.json() == {"detail": "no device 'MKS-BIN-9999' in the registry"}
    with sessions() as s:
        assert s.scalars(select(DeviceRow)).all() == []


def test_patch_that_breaks_the_geometry_is_422(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    """A depth that is not above the stored blind zone is a bad request (422), not a conflict."""
    tech = auth("technician")
    assert client.post("/devices", json=EM310, headers=tech).status_code == 201
    r = client.patch("/devices/24E124713B0000A1", json={"depth_mm": 150}, headers=tech)
    assert r.status_code == 422, r.text
    assert "must be less than depth_mm" in r.json()["detail"]
    assert client.get("/devices/24E124713B0000A1", headers=tech).json()["depth_mm"] == 2500


def test_a_bin_without_depth_is_refused(client: httpx.Client, sessions: sessionmaker[Session],
                                        auth: Callable[[str], dict[str, str]]) -> None:
    """Issue 14 item 10: ``POST /devices`` took a bin without ``depth_mm`` (201); it never alerted."""
    tech = auth("technician")
    body = {k: v for k, v in EM310.items() if k not in ("depth_mm", "blind_zone_mm")}
    r = client.post("/devices", json=body, headers=tech)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"loc": ["body", "depth_mm"], "msg": (
        "a bin needs its depth (sensor face to the empty bin floor, mm; --depth-mm) to compute its fill level; "
        "only a bin in stock may go without")}]
    assert "body field 'depth_mm'" in r.json()["detail"] or "depth_mm" in r.json()["detail"]
    with sessions() as s:
        assert s.scalars(select(DeviceRow)).all() == []
    stock = client.post("/devices", json={**body, "status": "in_stock"}, headers=tech)
    assert stock.status_code == 201, stock.text
    r = client.patch(f"/devices/{EM310['id']}", json={"status": "active"}, headers=tech)
    assert r.status_code == 422 and "depth_mm: a bin needs its depth" in r.json()["detail"], r.text
    r = client.patch(f"/devices/{EM310['id']}", json={"status": "active", "depth_mm": 2500}, headers=tech)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    r = client.patch(f"/devices/{EM310['id']}", json={"depth_mm": None}, headers=tech)
    assert r.status_code == 422 and "depth_mm" in r.json()["detail"], r.text


def test_an_air_station_with_bin_geometry_is_refused(client: httpx.Client, sessions: sessionmaker[Session],
                                                     auth: Callable[[str], dict[str, str]]) -> None:
    """``POST /devices`` took an air station with ``depth_mm`` (201), as `lorong devices add` does not."""
    tech = auth("technician")
    r = client.post("/devices", json={"id": "MKS-AIR-01", "kind": "air", "depth_mm": 900}, headers=tech)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"loc": ["body", "depth_mm"],
                                   "msg": "only a bin has it; an air station has no bin geometry"}]
    r = client.post("/devices", json={"id": "MKS-AIR-01", "kind": "air", "capacity_l": 660, "waste_kind": "organik",
                                      "blind_zone_mm": 200}, headers=tech)
    assert r.status_code == 422, r.text
    assert [e["loc"][1] for e in r.json()["errors"]] == ["blind_zone_mm", "capacity_l", "waste_kind"]
    with sessions() as s:
        assert s.scalars(select(DeviceRow)).all() == []
    ok = client.post("/devices", json={"id": "MKS-AIR-01", "kind": "air", "kecamatan": "Tallo", "blind_zone_mm": 0},
                     headers=tech)  # 0 is the column's default, as a CSV export writes it
    assert ok.status_code == 201, ok.text


def test_retire_rewrites_the_broker_files(client: httpx.Client, sessions: sessionmaker[Session], settings: Settings,
                                          auth: Callable[[str], dict[str, str]]) -> None:
    """Issue 14 item 14: a device retired through the API kept its line in the broker's password and
    ACL files until someone exported them by hand."""
    from devices.credentials import export_for, issue_credential

    tech = auth("technician")
    for dev in ("MKS-AIR-11", "MKS-AIR-12"):
        assert client.post("/devices", json={"id": dev, "kind": "air", "kecamatan": "Tallo"},
                           headers=tech).status_code == 201
        with sessions.begin() as s:
            issue_credential(s, dev, utcnow())
    out = settings.var_dir / "mosquitto"
    with sessions() as s:
        export_for(s, settings, out)
    assert "MKS-AIR-11:" in (out / "passwd").read_text()
    assert client.delete("/devices/MKS-AIR-11", headers=tech).status_code == 200
    files = (out / "passwd").read_text() + (out / "acl").read_text()
    assert "MKS-AIR-11" not in files and "MKS-AIR-12" in files
    # a status change to retired revokes the same way (it kept the device in the files)
    changed = client.patch("/devices/MKS-AIR-12", json={"status": "retired"}, headers=tech)
    assert changed.status_code == 200 and changed.json()["status"] == "retired", changed.text
    files = (out / "passwd").read_text() + (out / "acl").read_text()
    assert "MKS-AIR-12" not in files, files
