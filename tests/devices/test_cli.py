"""`lorong devices add|list|show|update|retire`: output and error messages, exit codes."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from devices.registry import get_device
from tests.devices.conftest import RunCli


def test_add_list_update_retire(run_cli: RunCli, sessions: sessionmaker[Session]) -> None:
    added = run_cli("add", "mks-bin-0001", "--kind", "bin", "--kecamatan", "Wajo", "--depth-mm", "1100",
                    "--installed-at", "2026-11-29T10:00:00+08:00", "--waste-kind", "organik")
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == "registered mks-bin-0001"
    assert run_cli("add", "MKS-AIR-01", "--kind", "air", "--kecamatan", "Tallo").exit_code == 0

    dup = run_cli("add", "mks-bin-0001", "--kind", "bin", "--depth-mm", "1100")
    assert dup.exit_code == 1 and dup.stderr.strip() == "error: device mks-bin-0001 is already registered"
    bad = run_cli("add", "X1", "--kind", "bin", "--depth-mm", "-3", "--waste-kind", "plastik")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == ("error: depth_mm: Input should be greater than 0; waste_kind: waste_kind must be "
                                  "one of organik, anorganik, campuran")

    listed = run_cli("list")
    assert listed.exit_code == 0 and "MKS-AIR-01" in listed.stdout and "mks-bin-0001" in listed.stdout
    assert listed.stdout.strip().endswith("2 device(s)")
    assert run_cli("list", "--kind", "air").stdout.strip().endswith("1 device(s)")

    updated = run_cli("update", "mks-bin-0001", "--kecamatan", "Mariso", "--street", "Lorong 9", "--clear",
                      "waste_kind")
    assert updated.exit_code == 0, updated.output
    assert updated.stdout.strip() == "updated mks-bin-0001: kecamatan, street, waste_kind"
    with sessions() as s:
        row = get_device(s, "mks-bin-0001")
        assert (row.kecamatan, row.street, row.waste_kind, row.depth_mm) == ("Mariso", "Lorong 9", None, 1100.0)

    nothing = run_cli("update", "mks-bin-0001")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    cleared = run_cli("update", "mks-bin-0001", "--clear", "kecamatan")
    assert cleared.exit_code == 2 and "kecamatan cannot be cleared" in cleared.stderr
    unknown = run_cli("update", "NOPE", "--kecamatan", "Wajo")
    assert unknown.exit_code == 1 and "no device 'NOPE' in the registry" in unknown.stderr

    retired = run_cli("retire", "MKS-AIR-01", "--at", "2027-01-05T09:00:00+08:00")
    assert retired.exit_code == 0 and "retired MKS-AIR-01; 0 MQTT credential(s) revoked" in retired.stdout
    assert run_cli("list").stdout.strip().endswith("1 device(s)")
    assert run_cli("list", "--all").stdout.strip().endswith("2 device(s)")
    again = run_cli("update", "MKS-AIR-01", "--kecamatan", "Wajo")
    assert again.exit_code == 1 and "is retired and cannot be changed" in again.stderr
    shown = run_cli("show", "MKS-AIR-01")
    assert shown.exit_code == 0 and "retired" in shown.stdout and "2027-01-05T01:00:00+00:00" in shown.stdout
    assert run_cli("show", "NOPE").exit_code == 1


def test_add_refuses_devices_the_ingester_would_reject(run_cli: RunCli, sessions: sessionmaker[Session]) -> None:
    geometry = run_cli("add", "X", "--kind", "bin", "--depth-mm", "100", "--blind-zone-mm", "200")
    assert geometry.exit_code == 2
    assert geometry.stderr.strip() == "error: blind_zone_mm: blind_zone_mm (200 mm) must be less than depth_mm (100 mm)"
    codec = run_cli("add", "X", "--kind", "bin", "--codec", "nonexistent-codec")
    assert codec.exit_code == 2
    assert codec.stderr.startswith("error: codec: unknown codec 'nonexistent-codec'; known: decentlab-dl-iam, ")
    assert run_cli("add", "X", "--kind", "bin", "--depth-mm", "1000", "--blind-zone-mm", "200").exit_code == 0
    shallow = run_cli("update", "X", "--depth-mm", "150")
    assert shallow.exit_code == 1
    assert shallow.stderr.strip() == "error: blind_zone_mm (200 mm) must be less than depth_mm (150 mm)"
    with sessions() as s:
        assert get_device(s, "X").depth_mm == 1000.0


def test_add_refuses_bin_fields_on_an_air_station(run_cli: RunCli, sessions: sessionmaker[Session]) -> None:
    depth = run_cli("add", "Z1", "--kind", "air", "--depth-mm", "900")
    assert depth.exit_code == 2
    assert depth.stderr.strip() == ("error: --depth-mm only applies to bins; an air station (--kind air) has no "
                                    "bin geometry")
    several = run_cli("add", "Z1", "--kind", "air", "--blind-zone-mm", "200", "--capacity-l", "660",
                      "--waste-kind", "organik")
    assert several.exit_code == 2
    assert several.stderr.strip() == ("error: --blind-zone-mm, --capacity-l, --waste-kind only apply to bins; an "
                                      "air station (--kind air) has no bin geometry")
    assert run_cli("list", "--all").stdout.strip().endswith("0 device(s)")
    assert run_cli("add", "Z1", "--kind", "air", "--kecamatan", "Tallo").exit_code == 0


def test_retire_bad_time_and_retire_twice(run_cli: RunCli, sessions: sessionmaker[Session]) -> None:
    assert run_cli("add", "R1", "--kind", "bin", "--depth-mm", "1000").exit_code == 0
    word = run_cli("retire", "R1", "--at", "yesterday")
    assert word.exit_code == 2
    assert word.stderr.strip() == ("error: --at 'yesterday' is not an ISO 8601 time; give one with a UTC offset, "
                                   "e.g. 2026-11-29T10:00:00+08:00")
    naive = run_cli("retire", "R1", "--at", "2027-01-05T09:00:00")
    assert naive.exit_code == 2
    assert naive.stderr.strip() == ("error: --at '2027-01-05T09:00:00' has no UTC offset; give one, e.g. "
                                    "2026-11-29T10:00:00+08:00")
    with sessions() as s:
        assert get_device(s, "R1").status == "active"

    first = run_cli("retire", "R1", "--at", "2027-01-05T09:00:00+08:00")
    assert first.exit_code == 0 and first.stdout.startswith("retired R1; 0 MQTT credential(s) revoked")
    again = run_cli("retire", "R1", "--at", "2027-02-01T09:00:00+08:00")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "R1 was already retired at 2027-01-05T01:00:00+00:00; nothing changed"
    with sessions() as s:
        row = get_device(s, "R1")
        assert row.status == "retired" and row.updated_at.isoformat() == "2027-01-05T01:00:00+00:00"
    assert run_cli("retire", "NOPE").exit_code == 1


def test_a_bin_without_depth_is_refused(run_cli: RunCli, sessions: sessionmaker[Session]) -> None:
    """Issue 14 item 10: a bin added without ``--depth-mm`` was registered and could never alert."""
    no_depth = run_cli("add", "MKS-BIN-0100", "--kind", "bin", "--kecamatan", "Wajo")
    assert no_depth.exit_code == 2, no_depth.output
    assert no_depth.stderr.strip() == ("error: depth_mm: a bin needs its depth (sensor face to the empty bin floor, "
                                       "mm; --depth-mm) to compute its fill level; only a bin in stock may go "
                                       "without")
    assert len(no_depth.stderr.strip().splitlines()) == 1
    # a sensor still in stock may be registered without it, and cannot be put to work without it
    assert run_cli("add", "MKS-BIN-0101", "--kind", "bin", "--status", "in_stock").exit_code == 0
    active = run_cli("update", "MKS-BIN-0101", "--status", "active")
    assert active.exit_code == 1
    assert active.stderr.strip() == ("error: depth_mm: a bin needs its depth (sensor face to the empty bin floor, "
                                     "mm; --depth-mm) to compute its fill level; only a bin in stock may go without")
    assert run_cli("update", "MKS-BIN-0101", "--status", "active", "--depth-mm", "1000").exit_code == 0
    cleared = run_cli("update", "MKS-BIN-0101", "--clear", "depth_mm")
    assert cleared.exit_code == 1 and "depth_mm: a bin needs its depth" in cleared.stderr
    assert run_cli("add", "MKS-AIR-09", "--kind", "air").exit_code == 0
    to_bin = run_cli("update", "MKS-AIR-09", "--kind", "bin")
    assert to_bin.exit_code == 1 and "depth_mm: a bin needs its depth" in to_bin.stderr
    with sessions() as s:
        assert get_device(s, "MKS-BIN-0101").depth_mm == 1000.0
        assert get_device(s, "MKS-AIR-09").kind == "air"
        assert [d for d in ("MKS-BIN-0100",) if _exists(s, d)] == []


def _exists(s: Session, device_id: str) -> bool:
    try:
        get_device(s, device_id)
    except Exception:
        return False
    return True


def test_list_filters_say_when_they_name_nothing(run_cli: RunCli) -> None:
    """``devices list --city Makassar``, ``--city surabaya``, ``--kecamatan wajo`` and ``--status activ``
    each printed an empty table, "0 device(s)" and exit 0: a typo read as "no devices there". A city
    and a kecamatan are matched without case, as ``devices add --city`` and the API's filters match
    them; a name the registry does not have, or a status that does not exist, is one ``error:`` line
    naming the known ones, exit 2."""
    assert run_cli("add", "MKS-BIN-0001", "--kind", "bin", "--kecamatan", "Wajo", "--depth-mm", "1100").exit_code == 0
    for args in (("--city", "Makassar"), ("--city", " makassar "), ("--kecamatan", "wajo"), ("--status", "active")):
        listed = run_cli("list", *args)
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.strip().endswith("1 device(s)"), (args, listed.stdout)
    for args, message in [
        (("--city", "surabaya"), "error: --city: no city 'surabaya' in the registry (known: makassar)"),
        (("--kecamatan", "Tallo"), "error: --kecamatan: no device is in 'Tallo'; known kecamatan: Wajo"),
        (("--city", "makassar", "--kecamatan", "Tallo"),
         "error: --kecamatan: no device of makassar is in 'Tallo'; known kecamatan: Wajo"),
        (("--status", "activ"), "error: --status: 'activ' is not one of in_stock, active, maintenance, retired"),
    ]:
        refused = run_cli("list", *args)
        assert (refused.exit_code, refused.stdout, refused.stderr.strip()) == (2, "", message), args
