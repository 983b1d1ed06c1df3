"""`lorong devices register` against the simulated device console on a real pty.

Every failure of the device or the cable must end with a clear message, exit code 3, no registry
row and no credential; the device must not have saved anything either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.credentials import check_password, live_credentials
from devices.registry import DeviceIn, add_device, get_device, retire_device
from firmware_sim.serial_device import SerialDevice
from lorong.core.model import utcnow
from lorong.storage.tables import DeviceCredentialRow, DeviceRow
from tests.devices.conftest import RunCli

DEV = "MKS-BIN-0042"
DETAILS = ["--lat", "-5.1335", "--lon", "119.4123", "--kecamatan", "Wajo", "--kelurahan", "Melayu",
           "--street", "Lorong 3 Jl. Sulawesi", "--depth-mm", "1100", "--blind-zone-mm", "250",
           "--capacity-l", "660", "--waste-kind", "organik", "--technician", "Andi"]
BROKER = ["--broker-host", "127.0.0.1", "--broker-port", "8883", "--interval", "900"]
TIMEOUT = ["--timeout", "1.0"]
EXPECTED_COMMANDS = ["HELLO lorong-serial/1", "ID", "TEST", "SET broker_host=127.0.0.1", "SET broker_port=8883",
                     f"SET topic=lorong%2Fv1%2F{DEV}%2Fup", f"SET username={DEV}", "SET password=***",
                     "SET interval_s=900", "GET", "SAVE"]


@pytest.fixture
def device(request: pytest.FixtureRequest) -> Iterator[SerialDevice]:
    """A simulated console; ``@pytest.mark.parametrize("device", [{...kwargs}], indirect=True)`` configures it."""
    kwargs = getattr(request, "param", {})
    with SerialDevice(**{"device_id": DEV, "delay_s": 3.0, **kwargs}) as dev:
        yield dev


def counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as s:
        return (int(s.scalar(select(func.count()).select_from(DeviceRow)) or 0),
                int(s.scalar(select(func.count()).select_from(DeviceCredentialRow)) or 0))


def password_from(stdout: str) -> str:
    line = next(ln for ln in stdout.splitlines() if "MQTT password (shown once" in ln)
    return line.rsplit(" ", 1)[-1]


@pytest.mark.parametrize("device", [{"ending": "crlf"}, {"ending": "lf"}, {"ending": "cr"}], indirect=True,
                         ids=["crlf", "lf", "cr"])
def test_register_happy_path(run_cli: RunCli, device: SerialDevice, sessions: sessionmaker[Session]) -> None:
    before = utcnow()
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *BROKER, *TIMEOUT)
    assert result.exit_code == 0, result.output
    assert "device MKS-BIN-0042: bin sensor LRG-US1, firmware 1.4.2" in result.stdout
    password = password_from(result.stdout)
    assert len(password) == 32
    assert device.commands == EXPECTED_COMMANDS
    assert device.saved == {"broker_host": "127.0.0.1", "broker_port": "8883", "topic": f"lorong/v1/{DEV}/up",
                            "username": DEV, "password": password, "interval_s": "900"}
    with sessions() as s:
        row = get_device(s, DEV)
        assert (row.kind, row.model, row.firmware, row.status, row.installed_by) == (
            "bin", "LRG-US1", "1.4.2", "active", "Andi")
        assert (row.lat, row.lon, row.kecamatan, row.kelurahan, row.street) == (
            -5.1335, 119.4123, "Wajo", "Melayu", "Lorong 3 Jl. Sulawesi")
        assert (row.depth_mm, row.blind_zone_mm, row.capacity_l, row.waste_kind, row.report_interval_s) == (
            1100.0, 250.0, 660.0, "organik", 900)
        assert row.installed_at is not None and before <= row.installed_at <= utcnow()
        (cred,) = live_credentials(s)
        assert (cred.device_id, cred.username, cred.topic) == (DEV, DEV, f"lorong/v1/{DEV}/up")
        assert check_password(password, cred.password_hash) and password not in cred.password_hash
    assert counts(sessions) == (1, 1)


FAILURES = [
    ({"fault": "slow", "fault_on": "ID"}, "ID: no reply within 1.0 s"),
    ({"fault": "slow", "fault_on": "SET password"}, "SET: no reply within 1.0 s"),
    ({"fault": "partial", "fault_on": "GET"}, "GET: partial line b'OK GET broker_host=127.0.0.1 broker_port=8883"),
    ({"fault": "partial", "fault_on": "HELLO", "ending": "cr"},
     "HELLO: partial line b'OK HELLO' and no line ending within 1.0 s"),
    ({"fault": "garbage", "fault_on": "TEST"}, r"garbage on the serial line: b'\xfe\x13\x8b\x00"),
    ({"fault": "garbage", "fault_on": "SAVE", "ending": "lf"}, "garbage on the serial line"),
    ({"fault": "nak", "fault_on": "SET"},
     "device refused SET: flash_locked (configuration memory is write-protected)"),
    ({"fault": "nak", "fault_on": "SAVE"}, "device refused SAVE: flash_locked"),
    ({"fault": "hangup", "fault_on": "SET password"}, "closed (cable pulled?)"),
    ({"fault": "hangup", "fault_on": "SAVE"}, "closed (cable pulled?)"),
    ({"fault": "hangup", "fault_on": "TEST"}, "closed (cable pulled?)"),
    ({"fault": "corrupt", "fault_on": "SET password"},
     "configuration read back differs: password_sha256: wrote '<password>', read '"),
    ({"fault": "corrupt", "fault_on": "SET topic"},
     f"configuration read back differs: topic: wrote 'lorong/v1/{DEV}/up', read 'lorong/v1/{DEV}/u'"),
]


@pytest.mark.parametrize(("device", "message"), FAILURES, indirect=["device"],
                         ids=[f"{f['fault']}-{f['fault_on'].replace(' ', '-')}" for f, _ in FAILURES])
def test_every_failure_leaves_the_registry_unchanged(run_cli: RunCli, device: SerialDevice, message: str,
                                                     sessions: sessionmaker[Session]) -> None:
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *BROKER, *TIMEOUT)
    assert result.exit_code == 3, result.output
    assert message in result.stderr
    assert result.stderr.startswith(f"error: {device.port}: ") and "nothing was registered" in result.stderr
    assert "MQTT password" not in result.stdout
    assert counts(sessions) == (0, 0)
    if device.fault_on == "SAVE" and device.fault == "garbage":
        # the device saved but its reply was lost: the registry must still hold nothing
        # (PROTOCOL.md: registering again overwrites that configuration)
        assert device.saved is not None
    else:
        assert device.saved is None


@pytest.mark.parametrize("device", [{"reading": {"distance": 25000.0}}, {"reading": {"batteryLevel": 0.5}},
                                    {"reading": {"colour": 3.0}}], indirect=True, ids=["range", "nodist", "metric"])
def test_implausible_self_test_is_refused(run_cli: RunCli, device: SerialDevice,
                                          sessions: sessionmaker[Session]) -> None:
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT)
    assert result.exit_code == 3
    assert any(m in result.stderr for m in ("distance=25000.0 mm is outside 0.0..20000.0",
                                            "did not report distance", "unknown metric 'colour'"))
    assert counts(sessions) == (0, 0) and not any(c.startswith("SET") for c in device.commands)


def test_missing_port(run_cli: RunCli, tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    result = run_cli("register", "--port", str(tmp_path / "ttyUSB9"), "--no-input", *DETAILS)
    assert result.exit_code == 3
    assert f"cannot open serial port {tmp_path / 'ttyUSB9'}" in result.stderr
    assert counts(sessions) == (0, 0)


def test_bad_details_write_nothing(run_cli: RunCli, device: SerialDevice, sessions: sessionmaker[Session]) -> None:
    args = [a if a != "-5.1335" else "95" for a in DETAILS]
    result = run_cli("register", "--port", device.port, "--no-input", *args, *TIMEOUT)
    assert result.exit_code == 2
    assert "lat: Input should be less than or equal to 90" in result.stderr
    assert device.commands == ["HELLO lorong-serial/1", "ID", "TEST"] and device.saved is None
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS[2:], *TIMEOUT)
    assert result.exit_code == 2 and "--lat is required with --no-input" in result.stderr
    assert counts(sessions) == (0, 0)


def test_prompts_walk_the_technician_through(run_cli: RunCli, device: SerialDevice,
                                            sessions: sessionmaker[Session]) -> None:
    answers = "Tallo\nKaluku Bodoa\nLorong 5\nabc\n-5.1101\n119.4402\n1000\n\n\nplastik\nanorganik\nBudi\n"
    result = run_cli("register", "--port", device.port, *TIMEOUT, input=answers)
    assert result.exit_code == 0, result.output
    for prompt in ("Kecamatan", "Kelurahan", "Street or lorong", "Latitude (degrees)", "Longitude (degrees)",
                   "Bin depth, sensor to empty floor (mm)", "Sensor blind zone (mm) [0.0]",
                   "Capacity (litres, empty to skip)", "Waste kind (organik, anorganik, campuran) [campuran]",
                   "Technician"):
        assert prompt in result.stdout
    assert "'abc': could not convert string to float" in result.stderr
    assert "'plastik': choose one of organik, anorganik, campuran" in result.stderr
    with sessions() as s:
        row = get_device(s, DEV)
        assert (row.kecamatan, row.kelurahan, row.street, row.lat, row.lon) == (
            "Tallo", "Kaluku Bodoa", "Lorong 5", -5.1101, 119.4402)
        assert (row.depth_mm, row.blind_zone_mm, row.capacity_l, row.waste_kind, row.installed_by) == (
            1000.0, 0.0, None, "anorganik", "Budi")
        assert row.report_interval_s == 600


@pytest.mark.parametrize("device", [{"device_id": "MKS-AIR-07", "kind": "air", "model": "LRG-AQ1"}],
                         indirect=True)
def test_air_station_needs_no_bin_geometry(run_cli: RunCli, device: SerialDevice,
                                           sessions: sessionmaker[Session]) -> None:
    args = ["--lat", "-5.14", "--lon", "119.42", "--kecamatan", "Panakkukang", "--technician", "Citra"]
    result = run_cli("register", "--port", device.port, "--no-input", *args, *TIMEOUT)
    assert result.exit_code == 0, result.output
    with sessions() as s:
        row = get_device(s, "MKS-AIR-07")
        assert (row.kind, row.model, row.depth_mm, row.waste_kind) == ("air", "LRG-AQ1", None, None)


def test_known_devices(run_cli: RunCli, device: SerialDevice, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id=DEV, kind="bin", status="active", kecamatan="Mariso", depth_mm=1000))
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT)
    assert result.exit_code == 1
    assert "device MKS-BIN-0042 is already registered (active)" in result.stderr
    assert not any(c.startswith("SET") for c in device.commands)
    with sessions.begin() as s:
        retire_device(s, DEV, utcnow())
    result = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT)
    assert result.exit_code == 1 and "(retired): ids are never reused" in result.stderr
    assert counts(sessions) == (1, 0) and device.saved is None


def test_in_stock_device_is_activated(run_cli: RunCli, device: SerialDevice, sessions: sessionmaker[Session],
                                      tmp_path: Path) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id=DEV, kind="bin", model="LRG-US1", status="in_stock"))
    first = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT)
    assert first.exit_code == 0, first.output
    with sessions() as s:
        row = get_device(s, DEV)
        assert (row.status, row.kecamatan, row.depth_mm) == ("active", "Wajo", 1100.0)
    # pulled for repair, then registered again: the new password replaces the old one, on the broker's
    # password file too when the deployment has one (issue 14 item 14: a re-issued password at once)
    assert run_cli("update", DEV, "--status", "maintenance").exit_code == 0
    assert run_cli("credentials", "export").exit_code == 0
    passwd = tmp_path / "var" / "mosquitto" / "passwd"
    second = run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT)
    assert second.exit_code == 0, second.output
    [line] = [x for x in passwd.read_text().splitlines() if x.startswith(f"{DEV}:")]
    assert check_password(password_from(second.stdout), line.split(":", 1)[1])
    assert "rewritten" in second.stdout, second.stdout
    with sessions() as s:
        (cred,) = live_credentials(s)
        assert check_password(password_from(second.stdout), cred.password_hash)
        assert not check_password(password_from(first.stdout), cred.password_hash)
        assert get_device(s, DEV).status == "active"
    assert counts(sessions) == (1, 2)


@pytest.mark.parametrize("backend", ["sqlite"])  # the in-process tests cover both back ends
@pytest.mark.parametrize("device", [{"fault": "ok"}, {"fault": "hangup", "fault_on": "GET"}], indirect=True,
                         ids=["ok", "hangup"])
def test_real_command_in_a_subprocess(device: SerialDevice, cli_env: dict[str, str],
                                      sessions: sessionmaker[Session], backend: str) -> None:
    """The installed `lorong` console script, as a technician runs it."""
    lorong = Path(sys.executable).parent / "lorong"
    proc = subprocess.run([str(lorong), "--log-level", "WARNING", "devices", "register", "--port", device.port,
                           "--no-input", *DETAILS, *BROKER, *TIMEOUT],
                          env={**os.environ, **cli_env}, capture_output=True, text=True, timeout=60)
    if device.fault == "ok":
        assert proc.returncode == 0, proc.stderr
        assert device.saved is not None and device.saved["password"] == password_from(proc.stdout)
        assert counts(sessions) == (1, 1)
    else:
        assert proc.returncode == 3
        assert "closed (cable pulled?)" in proc.stderr and "nothing was registered" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert counts(sessions) == (0, 0)


def test_installed_at_is_utc(run_cli: RunCli, device: SerialDevice, sessions: sessionmaker[Session]) -> None:
    assert run_cli("register", "--port", device.port, "--no-input", *DETAILS, *TIMEOUT).exit_code == 0
    with sessions() as s:
        at = get_device(s, DEV).installed_at
        assert at is not None and at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sim_serial_device_command(run_cli: RunCli, sessions: sessionmaker[Session], backend: str) -> None:
    """`lorong sim serial-device` serves a console a technician can register against."""
    proc = subprocess.Popen([sys.executable, "-c", "from firmware_sim.cli import app; app()", "serial-device",
                             "--id", "MKS-BIN-0900", "--ending", "cr", "--duration", "30"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("serial console of MKS-BIN-0900 on /dev/pts/"), first
        port = first.split(" on ", 1)[1].split(" ", 1)[0]
        result = run_cli("register", "--port", port, "--no-input", *DETAILS, *TIMEOUT)
        assert result.exit_code == 0, result.output
        for _ in range(3):  # skip the usage hint line; the saved configuration follows
            line = proc.stdout.readline()
            if line.startswith("saved configuration"):
                break
        assert "'topic': 'lorong/v1/MKS-BIN-0900/up'" in line and "'password': '***'" in line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert counts(sessions) == (1, 1)
