"""Registry CRUD and lifecycle on SQLite and PostgreSQL (``db_url`` is parametrized in conftest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.credentials import issue_credential, live_credentials
from devices.registry import (
    DeviceIn,
    DeviceUpdate,
    RegistryLookup,
    add_device,
    get_device,
    list_devices,
    retire_device,
    update_device,
)
from ingest.codecs import CODECS
from lorong.core.errors import DeviceExists, DeviceRetired, UnknownDevice
from lorong.core.model import DeviceKind
from lorong.storage.tables import DeviceCredentialRow, DeviceRow

WITA = timezone(timedelta(hours=8))  # Makassar local time
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=WITA)


def full_bin(device_id: str = "MKS-BIN-0001", **kw: object) -> DeviceIn:
    """A bin with every field set."""
    base: dict[str, object] = dict(
        id=device_id, kind="bin", model="LRG-US1", codec=None, lat=-5.1335, lon=119.4123, kecamatan="Wajo",
        kelurahan="Melayu", street="Lorong 3 Jl. Sulawesi", depth_mm=1100.0, blind_zone_mm=250.0,
        capacity_l=660.0, waste_kind="organik", full_threshold=0.85, report_interval_s=900, status="active",
        firmware="1.4.2", installed_at=T0, installed_by="Andi")
    base.update(kw)
    return DeviceIn.model_validate(base)


def test_add_get_round_trip(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin())
    with sessions() as s:
        row = get_device(s, "MKS-BIN-0001")
        assert (row.kind, row.model, row.kecamatan, row.kelurahan, row.street) == (
            "bin", "LRG-US1", "Wajo", "Melayu", "Lorong 3 Jl. Sulawesi")
        assert (row.lat, row.lon, row.depth_mm, row.blind_zone_mm, row.capacity_l) == (
            -5.1335, 119.4123, 1100.0, 250.0, 660.0)
        assert (row.waste_kind, row.full_threshold, row.report_interval_s, row.status, row.firmware) == (
            "organik", 0.85, 900, "active", "1.4.2")
        # stored in UTC, read back tz-aware and equal to the WITA time entered
        assert row.installed_at == T0 and row.installed_at.utcoffset() == timedelta(0)
        assert row.installed_at.hour == 2
        assert row.created_at.tzinfo is not None and row.last_seen is None


def test_deveui_is_upper_cased_and_found_either_way(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="24e124713b0000a1", kind="bin", depth_mm=2500))
    with sessions() as s:
        assert get_device(s, "24e124713b0000a1").id == "24E124713B0000A1"
    assert RegistryLookup(sessions).get("24e124713b0000a1") is not None


def test_duplicate_and_unknown(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin())
    with pytest.raises(DeviceExists, match="MKS-BIN-0001 is already registered"), sessions.begin() as s:
        add_device(s, full_bin(kecamatan="Tallo"))
    with sessions() as s:
        assert get_device(s, "MKS-BIN-0001").kecamatan == "Wajo"
        with pytest.raises(UnknownDevice, match="NOPE"):
            get_device(s, "NOPE")
        with pytest.raises(UnknownDevice):
            get_device(s, "not a valid id!")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lat", 95.0, "less than or equal to 90"),
    ("depth_mm", 0, "greater than 0"),
    ("waste_kind", "plastik", "organik, anorganik, campuran"),
    ("status", "lost", "in_stock, active, maintenance, retired"),
    ("id", "bad id", "bad device id"),
    ("installed_at", "2026-11-29T10:00:00", "needs a UTC offset"),
    ("colour", "green", "Extra inputs are not permitted"),
    ("codec", "nonexistent-codec", "unknown codec 'nonexistent-codec'; known: decentlab-dl-iam, "),
    ("blind_zone_mm", 1100.0, r"blind_zone_mm \(1100 mm\) must be less than depth_mm \(1100 mm\)"),
])
def test_invalid_input_is_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        full_bin(**{field: value})


def test_list_filters(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("B1", kecamatan="Wajo"))
        add_device(s, full_bin("B2", kecamatan="Tallo", status="in_stock"))
        add_device(s, DeviceIn(id="A1", kind="air", kecamatan="Wajo"))
        add_device(s, full_bin("B3", kecamatan="Wajo"))
        retire_device(s, "B3", T0)
    with sessions() as s:
        assert [d.id for d in list_devices(s)] == ["A1", "B1", "B2"]
        assert [d.id for d in list_devices(s, include_retired=True)] == ["A1", "B1", "B2", "B3"]
        assert [d.id for d in list_devices(s, DeviceKind.BIN, "Wajo")] == ["B1"]
        assert [d.id for d in list_devices(s, status="in_stock")] == ["B2"]
        assert [d.id for d in list_devices(s, status="retired")] == ["B3"]


def test_update_changes_only_given_fields(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        created = add_device(s, full_bin()).updated_at
    with sessions.begin() as s:
        row = update_device(s, "MKS-BIN-0001", DeviceUpdate(kecamatan="Tallo", depth_mm=1250,
                                                                codec="milesight-em310-udl"))
    with sessions() as s:
        row = get_device(s, "MKS-BIN-0001")
        assert (row.kecamatan, row.depth_mm, row.codec, row.kelurahan, row.capacity_l) == (
            "Tallo", 1250.0, "milesight-em310-udl", "Melayu", 660.0)
        assert row.updated_at >= created
    with sessions.begin() as s:
        update_device(s, "MKS-BIN-0001", DeviceUpdate(codec=None, capacity_l=None, kind=DeviceKind.AIR))
    with sessions() as s:
        row = get_device(s, "MKS-BIN-0001")
        assert (row.codec, row.capacity_l, row.kind, row.kecamatan) == (None, None, "air", "Tallo")


def test_update_refuses_id_nulls_and_unknown(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        DeviceUpdate.model_validate({"id": "OTHER"})
    with pytest.raises(ValidationError, match="kecamatan, model cannot be cleared"):
        DeviceUpdate.model_validate({"model": None, "kecamatan": None})
    with pytest.raises(ValidationError, match="greater than 0"):
        DeviceUpdate(depth_mm=-1)
    with pytest.raises(UnknownDevice), sessions.begin() as s:
        update_device(s, "NOPE", DeviceUpdate(kecamatan="Wajo"))


def test_devices_the_ingester_would_reject_are_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValidationError) as err:
        DeviceIn(id="X", kind="bin", depth_mm=100, blind_zone_mm=200, codec="nonexistent-codec")
    assert [(e["loc"], e["msg"]) for e in err.value.errors()] == [
        (("codec",), "Value error, unknown codec 'nonexistent-codec'; known: " + ", ".join(sorted(CODECS))),
        (("blind_zone_mm",), "Value error, blind_zone_mm (200 mm) must be less than depth_mm (100 mm)")]
    assert DeviceIn(id="X", kind="bin", depth_mm=1000, codec="").codec is None  # an empty CSV cell: no codec
    with pytest.raises(ValidationError, match="blind_zone_mm \\(300 mm\\) must be less than depth_mm \\(300 mm\\)"):
        DeviceUpdate(depth_mm=300, blind_zone_mm=300)
    with pytest.raises(ValidationError, match="unknown codec 'em310'"):
        DeviceUpdate(codec="em310")
    with sessions.begin() as s:
        add_device(s, full_bin())  # depth 1100 mm, blind zone 250 mm
    for change, message in ((DeviceUpdate(depth_mm=200), "blind_zone_mm (250 mm) must be less than depth_mm (200 mm)"),
                            (DeviceUpdate(blind_zone_mm=1500), "blind_zone_mm (1500 mm) must be less than depth_mm "
                                                               "(1100 mm)")):
        with pytest.raises(ValueError) as bad, sessions.begin() as s:
            update_device(s, "MKS-BIN-0001", change)
        assert str(bad.value) == message
    with sessions.begin() as s:
        # back in stock, no depth: no geometry to check (a bin at work needs its depth, issue 14 item 10)
        update_device(s, "MKS-BIN-0001", DeviceUpdate(depth_mm=None, status="in_stock"))
        update_device(s, "MKS-BIN-0001", DeviceUpdate(blind_zone_mm=1500))
    with sessions() as s:
        row = get_device(s, "MKS-BIN-0001")
        assert (row.depth_mm, row.blind_zone_mm) == (None, 1500.0)
    with pytest.raises(ValueError, match="depth_mm: a bin needs its depth"), sessions.begin() as s:
        update_device(s, "MKS-BIN-0001", DeviceUpdate(status="active"))


def count(sessions: sessionmaker[Session], table: type[DeviceRow] | type[DeviceCredentialRow]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_retire_revokes_credentials(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("B1"))
        add_device(s, full_bin("B2"))
        issue_credential(s, "B1", T0)
        issue_credential(s, "B1", T0 + timedelta(minutes=1))  # rotation revokes the first
        issue_credential(s, "B2", T0)
    with sessions() as s:
        assert [c.username for c in live_credentials(s)] == ["B1", "B2"]
    at = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
    with sessions.begin() as s:
        row = retire_device(s, "B1", at)
        assert row.status == "retired"
    with sessions() as s:
        assert [c.username for c in live_credentials(s)] == ["B2"]
        revoked = s.scalars(select(DeviceCredentialRow).where(DeviceCredentialRow.device_id == "B1")
                            .order_by(DeviceCredentialRow.id)).all()
        assert [c.revoked_at for c in revoked] == [T0 + timedelta(minutes=1), at]
        assert get_device(s, "B1").updated_at == at
    assert RegistryLookup(sessions).get("B1") is None
    # retiring again changes nothing; a retired device cannot be updated or get credentials
    with sessions.begin() as s:
        assert retire_device(s, "B1", at + timedelta(days=1)).updated_at == at
    with pytest.raises(DeviceRetired, match="retired"), sessions.begin() as s:
        update_device(s, "B1", DeviceUpdate(kecamatan="Tallo"))
    with pytest.raises(ValueError, match="retired"), sessions.begin() as s:
        issue_credential(s, "B1", at)
    assert count(sessions, DeviceCredentialRow) == 3
    with pytest.raises(UnknownDevice), sessions.begin() as s:
        retire_device(s, "NOPE", at)
    with pytest.raises(ValueError, match="tz-aware"), sessions.begin() as s:
        retire_device(s, "B2", datetime(2027, 1, 5))


def test_status_retired_through_update_also_revokes(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("B1"))
        issue_credential(s, "B1", T0)
    with sessions.begin() as s:
        update_device(s, "B1", DeviceUpdate(status="retired"))
    with sessions() as s:
        assert live_credentials(s) == []
