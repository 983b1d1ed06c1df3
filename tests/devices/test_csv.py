"""Registry CSV: round trip, and bad rows named by row and column with nothing imported."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.csvio import COLUMNS, CsvProblems, Problem, import_devices, read_devices, write_devices
from devices.registry import DeviceIn, add_device, list_devices, retire_device
from ingest.codecs import CODECS
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.tables import DeviceRow
from tests.devices.conftest import RunCli
from tests.devices.test_registry import T0, full_bin

HEADER = ",".join(COLUMNS)


def fleet(sessions: sessionmaker[Session]) -> None:
    """Five devices covering every field, empty optionals, a DevEUI and a retired one."""
    with sessions.begin() as s:
        add_device(s, full_bin("MKS-BIN-0001"))
        add_device(s, full_bin("MKS-BIN-0002", street='Jl. "Lorong, 7"', waste_kind=None, capacity_l=None,
                               lat=-5.1, lon=119.0, depth_mm=987.654321, installed_at=None, firmware=""))
        add_device(s, DeviceIn(id="24e124713b0000a1", kind="bin", model="EM310-UDL", codec="milesight-em310-udl",
                               depth_mm=2500, blind_zone_mm=200, status="in_stock"))
        add_device(s, DeviceIn(id="MKS-AIR-01", kind="air", kecamatan="Panakkukang", kelurahan="Pandang"))
        add_device(s, full_bin("MKS-BIN-0003"))
        retire_device(s, "MKS-BIN-0003", T0)


def export_text(sessions: sessionmaker[Session]) -> str:
    buf = io.StringIO()
    with sessions() as s:
        write_devices(list_devices(s, include_retired=True), buf)
    return buf.getvalue()


def test_round_trip(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    fleet(sessions)
    first = export_text(sessions)
    lines = first.splitlines()
    assert lines[0] == HEADER and len(lines) == 6
    assert lines[1].startswith("24E124713B0000A1,bin,EM310-UDL,milesight-em310-udl,")
    assert '"Jl. ""Lorong, 7"""' in first and "987.654321" in first and "2026-11-29T02:00:00+00:00" in first

    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(other_url)
    other = session_factory(make_engine(other_url))
    with other.begin() as s:
        assert len(import_devices(s, io.StringIO(first))) == 5
    assert export_text(other) == first
    with sessions() as a, other() as b:
        for row in list_devices(a, include_retired=True):
            copy = b.get(DeviceRow, row.id)
            assert copy is not None
            assert {c: getattr(copy, c) for c in COLUMNS} == {c: getattr(row, c) for c in COLUMNS}


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(CsvProblems) as info:
        read_devices(io.StringIO(text))
    return info.value.problems


def test_bad_rows_are_named_by_row_and_column() -> None:
    text = ("id,kind,lat,depth_mm,waste_kind,installed_at\n"
            "MKS-BIN-0001,bin,-5.13,1000,organik,2026-11-29T10:00:00+08:00\n"
            "MKS-BIN-0002,bin,95,1000,organik,\n"
            "MKS-BIN-0003,tong,-5.13,-4,,\n"
            "\n"
            "MKS-BIN-0001,bin,-5.13,1000,plastik,2026-11-29 10:00\n"
            "bad id,air,,,,\n")
    got = [(p.row, p.column, p.message) for p in problems_of(text)]
    assert got == [
        (3, "lat", "Input should be less than or equal to 90 (got '95')"),
        (4, "kind", "Input should be 'bin' or 'air' (got 'tong')"),
        (4, "depth_mm", "Input should be greater than 0 (got '-4')"),
        (6, "waste_kind", "waste_kind must be one of organik, anorganik, campuran (got 'plastik')"),
        (6, "installed_at", "installed_at needs a UTC offset, e.g. 2026-11-29T10:00:00+08:00 (got '2026-11-29 10:00')"),
        (7, "id", "bad device id 'bad id': use 1-64 letters, digits, '.', '_' or '-' (got 'bad id')"),
    ]


def test_duplicates_header_and_shape_problems() -> None:
    dup = problems_of("id,kind,depth_mm\nB1,bin,900\nB2,air,\nb1,bin,900\nB2,bin,900\n")
    assert [str(p) for p in dup] == ["row 5, column id: B2 already appears in row 3"]
    head = problems_of("id,kind,colour\nB1,bin,green\n")
    assert [str(p) for p in head] == [f"row 1, column colour: unknown column; known columns: {', '.join(COLUMNS)}"]
    assert [str(p) for p in problems_of("id,model\nB1,x\n")] == ["row 1, column kind: required column missing"]
    assert [str(p) for p in problems_of("")] == ["row 1, column -: empty file: expected a header row"]
    assert [str(p) for p in problems_of("id,kind\nB1,bin,extra\n")] == ["row 2, column -: 3 cells, header has 2"]


def test_spreadsheet_export_with_bom_and_semicolons() -> None:
    rows = read_devices(io.StringIO("\ufeffid;kind;kecamatan;depth_mm\r\nB1;bin;Wajo;1000\r\n"))
    assert [(n, d.id, d.kecamatan, d.depth_mm) for n, d in rows] == [(2, "B1", "Wajo", 1000.0)]


def device_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(DeviceRow)) or 0)


def test_import_with_one_bad_row_imports_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("TAKEN"))
    good = "id,kind,depth_mm\nN1,bin,1000\nN2,air,\n"
    with pytest.raises(CsvProblems) as info, sessions.begin() as s:
        import_devices(s, io.StringIO(good + "TAKEN,bin,1000\nN3,bin,1000\n"))
    assert [str(p) for p in info.value.problems] == ["row 4, column id: device TAKEN is already registered"]
    assert device_count(sessions) == 1


def test_cli_import_export(run_cli: RunCli, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,kind,depth_mm\nN1,bin,1000\nN2,bin,-1\n")
    result = run_cli("import", str(bad))
    assert result.exit_code == 1
    assert re.search(r"│ 3 +│ depth_mm +│ Input should be greater than 0 \(got '-1'\) +│", result.stderr)
    assert "1 problem(s) in" in result.stderr and "nothing imported" in result.stderr
    assert device_count(sessions) == 0

    good = tmp_path / "good.csv"
    good.write_text("id,kind,kecamatan,depth_mm,status\nN1,bin,Wajo,1000,\nN2,air,Tallo,,in_stock\n")
    result = run_cli("import", str(good))
    assert result.exit_code == 0, result.output
    assert "imported 2 devices" in result.stdout
    out = tmp_path / "out.csv"
    assert run_cli("export", str(out)).exit_code == 0
    text = out.read_text()
    assert text.splitlines()[1:] == [
        "N1,bin,,,,,Wajo,,,,1000.0,0.0,,,,600,active,,,,makassar",
        "N2,air,,,,,Tallo,,,,,0.0,,,,600,in_stock,,,,makassar",
    ]
    stdout = run_cli("export", "-", "--status", "in_stock").stdout
    assert stdout.splitlines() == [HEADER, "N2,air,,,,,Tallo,,,,,0.0,,,,600,in_stock,,,,makassar"]


def test_rows_the_ingester_would_reject_are_named() -> None:
    text = ("id,kind,codec,depth_mm,blind_zone_mm\n"
            "B1,bin,milesight-em310-udl,1000,150\n"
            "B2,bin,nonexistent-codec,1000,150\n"
            "B3,bin,,100,200\n")
    assert [(p.row, p.column, p.message) for p in problems_of(text)] == [
        (3, "codec", f"unknown codec 'nonexistent-codec'; known: {', '.join(sorted(CODECS))} "
                     "(got 'nonexistent-codec')"),
        (4, "blind_zone_mm", "blind_zone_mm (200 mm) must be less than depth_mm (100 mm) (got '200')"),
    ]


def test_import_update_changes_registered_devices(run_cli: RunCli, sessions: sessionmaker[Session],
                                                  tmp_path: Path) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("UPD-1"))
        add_device(s, full_bin("UPD-GONE"))
        retire_device(s, "UPD-GONE", T0)
    sheet = tmp_path / "update.csv"
    sheet.write_text("id,kind,kecamatan,depth_mm,full_threshold\nUPD-1,bin,Tallo,1400,\nUPD-2,air,Wajo,,\n")
    refused = run_cli("import", str(sheet))
    assert refused.exit_code == 1 and "device UPD-1 is already registered" in refused.stderr
    assert "import it with --update" in refused.stderr
    assert device_count(sessions) == 2

    result = run_cli("import", "--update", str(sheet))
    assert result.exit_code == 0, result.output
    assert "imported 2 devices (1 new, 1 updated)" in result.stdout
    with sessions() as s:
        row = s.get(DeviceRow, "UPD-1")
        assert row is not None and (row.kecamatan, row.depth_mm) == ("Tallo", 1400.0)
        assert row.full_threshold == full_bin("UPD-1").full_threshold  # an empty cell changes nothing
        assert s.get(DeviceRow, "UPD-2") is not None

    retired = tmp_path / "retired.csv"
    retired.write_text("id,kind,kecamatan\nUPD-1,bin,Wajo\nUPD-GONE,bin,Wajo\n")
    result = run_cli("import", "--update", str(retired))
    assert result.exit_code == 1 and "retired" in result.stderr
    with sessions() as s:
        row = s.get(DeviceRow, "UPD-1")
        assert row is not None and row.kecamatan == "Tallo"  # nothing written when a row is refused


def test_semicolon_file_takes_decimal_commas() -> None:
    """Indonesian-locale Excel: ``;`` separator and decimal commas in every numeric column."""
    text = ("id;kind;lat;lon;depth_mm;blind_zone_mm;capacity_l;full_threshold;report_interval_s\r\n"
            "B1;bin;-5,1;119,4321;1200,5;250,0;660,25;0,85;600,0\r\n"
            "B2;bin;-5.13;119;1000;0;;;900\r\n")
    rows = read_devices(io.StringIO(text))
    assert [(n, d.lat, d.lon, d.depth_mm, d.blind_zone_mm, d.capacity_l, d.full_threshold, d.report_interval_s)
            for n, d in rows] == [(2, -5.1, 119.4321, 1200.5, 250.0, 660.25, 0.85, 600),
                                  (3, -5.13, 119.0, 1000.0, 0.0, None, None, 900)]


def test_decimal_comma_only_in_semicolon_files_and_only_for_plain_numbers() -> None:
    text = ("id;kind;lat;lon;depth_mm;street\n"
            "B1;bin;-5,1,2;119;1000;Jl. Andalas 7,5\n"
            "B2;bin;-5.1,2;119;1000;\n"
            "B3;bin;-5;1,19e2;1000;\n")
    got = [(p.row, p.column, p.message) for p in problems_of(text)]
    assert got == [
        (2, "lat", "Input should be a valid number, unable to parse string as a number (got '-5,1,2')"),
        (3, "lat", "Input should be a valid number, unable to parse string as a number (got '-5.1,2')"),
        (4, "lon", "Input should be a valid number, unable to parse string as a number (got '1,19e2')"),
    ]
    assert read_devices(io.StringIO("id;kind;depth_mm;street\nB1;bin;1000;Jl. Andalas 7,5\n"))[0][1].street == \
        "Jl. Andalas 7,5"
    comma_file = problems_of('id,kind,lat,depth_mm\nB1,bin,"-5,1",1000\n')
    assert [(p.row, p.column) for p in comma_file] == [(2, "lat")]


def test_import_reports_registered_ids_with_other_bad_rows(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, full_bin("TAKEN"))
    with pytest.raises(CsvProblems) as info, sessions.begin() as s:
        import_devices(s, io.StringIO("id,kind,depth_mm\nN1,bin,-1\nTAKEN,bin,1000\nN2,tong,\n"))
    assert [str(p) for p in info.value.problems] == [
        "row 2, column depth_mm: Input should be greater than 0 (got '-1')",
        "row 3, column id: device TAKEN is already registered",
        "row 4, column kind: Input should be 'bin' or 'air' (got 'tong')",
    ]
    assert device_count(sessions) == 1
