"""Every ``lorong`` command turns bad settings and unreachable services into one ``error:`` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorong.storage import stack
from lorong.storage.db import migrate
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool


def lorong(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lorong.cli *args`` in ``tmp_path`` with only the given ``LORONG_`` variables
    (plus a database, created if missing, and var dir in ``tmp_path``)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    db = tmp_path / "l.db"
    if "LORONG_DATABASE_URL" not in env and not db.exists():
        migrate(f"sqlite:///{db}")  # commands other than stack up/demo/devices add refuse a missing one
    base.update({"LORONG_VAR_DIR": str(tmp_path / "var"), "LORONG_DATABASE_URL": f"sqlite:///{db}",
                 "LORONG_INGEST__SPOOL_DIR": str(tmp_path / "spool")})
    base.update(env)
    return subprocess.run([sys.executable, "-m", "lorong.cli", *args], cwd=tmp_path, env=base, capture_output=True,
                          text=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command, after checking its exit status."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(("args", "env", "expected"), [
    (("analytics", "run-once"), {"LORONG_MQTT__PORT": "99999"},
     "error: invalid settings: LORONG_MQTT__PORT: Input should be less than or equal to 65535 (got '99999')"),
    (("devices", "list"), {"LORONG_MQTT__TOPICS": "notjson"},
     "error: invalid settings: LORONG_MQTT__TOPICS: the value must be JSON"),
    (("analytics", "run-once"), {"LORONG_ANALYTICS__FULL_THRESHOLD": "1.5"},
     "error: invalid settings: LORONG_ANALYTICS__FULL_THRESHOLD: Input should be less than or equal to 1"),
    (("analytics", "run-once"),
     {"LORONG_ANALYTICS__FULL_THRESHOLD": "0.9", "LORONG_ANALYTICS__OVERFLOW_THRESHOLD": "0.5"},
     "error: invalid settings: LORONG_ANALYTICS__OVERFLOW_THRESHOLD (0.5) must be at least "
     "LORONG_ANALYTICS__FULL_THRESHOLD (0.9)"),
    (("analytics", "run-once"), {"LORONG_ANALYTICS__TIMEZONE": "Mars/Base"},
     "error: invalid settings: LORONG_ANALYTICS__TIMEZONE: unknown time zone 'Mars/Base'"),
    (("analytics", "run-once"), {"LORONG_ANALYTICS__COLLECTION_TIMES": '["25:00"]'},
     "error: invalid settings: LORONG_ANALYTICS__COLLECTION_TIMES: collection times must be"),
    (("api", "token", "list"), {"LORONG_DATABASE_URL": "mysql://x"},
     "error: invalid settings: LORONG_DATABASE_URL: unsupported database URL 'mysql://x': use sqlite:///"),
    # without its scheme the URL passed, and every command that reads InfluxDB said "InfluxDB unavailable ...
    # (is it running?)" about a running InfluxDB
    (("analytics", "run-once"), {"LORONG_INFLUX__URL": "127.0.0.1:8086"},
     "error: invalid settings: LORONG_INFLUX__URL: '127.0.0.1:8086' is not an http:// or https:// URL "
     "(e.g. http://127.0.0.1:8086)"),
    (("cities", "list"), {"LORONG_INFLUX__URL": "http://"},
     "error: invalid settings: LORONG_INFLUX__URL: 'http://' is not an http:// or https:// URL"),
])
def test_bad_settings_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
                                      expected: str) -> None:
    assert one_line(lorong(tmp_path, *args, **env), 2).startswith(expected)


@pytest.mark.parametrize("args", [("analytics", "run-once"), ("storage", "retention", "show"),
                                  ("storage", "retention", "apply")])
def test_influx_unreachable_one_line_exit_1(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Every command that reads InfluxDB says the same when it is down (tried as a new user: ``storage
    retention show`` gave the connection error alone, no hint)."""
    url = f"http://127.0.0.1:{stack.free_port()}"
    line = one_line(lorong(tmp_path, *args, LORONG_INFLUX__URL=url), 1)
    assert line.startswith(f"error: InfluxDB unavailable: influx {url}/")
    assert line.endswith("(is it running? check LORONG_INFLUX__URL)")


def test_a_missing_influx_database_says_what_creates_it(tmp_path: Path, influxd: stack.Service) -> None:
    """Tried as a new user: ``analytics run-once`` with a database name InfluxDB does not have said
    "influx: database not found: lorong_fresh in 'SHOW FIELD KEYS ...'" and nothing of what to do."""
    line = one_line(lorong(tmp_path, "analytics", "run-once", LORONG_INFLUX__URL=f"http://127.0.0.1:{influxd.port}",
                           LORONG_INFLUX__DATABASE="lorong_fresh"), 1)
    assert "database not found: lorong_fresh" in line
    assert line.endswith("; `lorong stack up` (or `lorong demo`) creates it, or set LORONG_INFLUX__DATABASE to one "
                         "that exists")


def test_database_unreachable_one_line_exit_1(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://lorong@127.0.0.1:{stack.free_port()}/lorong"
    line = one_line(lorong(tmp_path, "devices", "list", LORONG_DATABASE_URL=url), 1)
    assert line.startswith("error: database unavailable: ") and "127.0.0.1" in line
    assert line.endswith("(is it running? check LORONG_DATABASE_URL)")


def test_second_ingester_one_line_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "lorong-ingest-7.sqlite"
    spool = Spool(path)  # the first ingester
    try:
        proc = lorong(tmp_path, "ingest", "run", LORONG_MQTT__CLIENT_ID="lorong-ingest-7",
                      LORONG_MQTT__PORT=str(stack.free_port()))
    finally:
        spool.close()
    assert one_line(proc, 1) == (f"error: another ingester with client id lorong-ingest-7 is running "
                                 f"(spool {path} is locked)")


@pytest.mark.parametrize(("flag", "env"), [(("--log-level", "DEBUG"), {}), ((), {"LORONG_DEBUG": "1"})])
def test_traceback_on_request(tmp_path: Path, flag: tuple[str, ...], env: dict[str, str]) -> None:
    proc = lorong(tmp_path, *flag, "analytics", "run-once", LORONG_MQTT__PORT="99999", **env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "less_than_equal" in proc.stderr


def test_export_into_a_missing_folder_one_line_exit_1(tmp_path: Path, influx: InfluxClient) -> None:
    """An output file in a folder that does not exist is refused before anything is queried (a
    typo'd path is not made into folders): one line naming the folder, for both exports."""
    env = {"LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database}
    line = one_line(lorong(tmp_path, "export", "readings", "--from", "2026-01-01", "--to", "2026-01-02",
                           "--out", "missing/dir/x.csv", **env), 1)
    assert line == "error: folder missing/dir does not exist: create it first, or write elsewhere"
    line = one_line(lorong(tmp_path, "devices", "export", "missing/dir/devices.csv"), 1)
    assert line == "error: folder missing/dir does not exist: create it first, or write elsewhere"
    assert not (tmp_path / "missing").exists()
    (tmp_path / "here").mkdir()  # and where the folder exists, both write
    assert lorong(tmp_path, "devices", "export", "here/devices.csv").returncode == 0
    assert (tmp_path / "here" / "devices.csv").read_text().startswith("id,kind,")


def test_aqi_of_an_impossible_concentration_one_line_exit_2(tmp_path: Path) -> None:
    """1e308 ug/m3 overflowed the index (ISPU) or the Decimal rounding (US AQI) into a traceback."""
    for standard in ("ispu", "us"):
        line = one_line(lorong(tmp_path, "aqi", "--standard", standard, "--value", "1e308"), 2)
        assert line == ("error: concentration must be <= 1e+09 ug/m3 (1 kg/m3, about the density of air itself), "
                        "got 1e+308")


def test_unknown_log_level_one_line_exit_2(tmp_path: Path) -> None:
    """``--log-level LOUD`` was a traceback from :func:`logging.basicConfig`; now one line naming the levels."""
    for flag in (("--log-level", "LOUD"), ("--log-level=loud",)):
        line = one_line(lorong(tmp_path, *flag, "cities", "list"), 2)
        assert line == "error: --log-level 'LOUD': use DEBUG, INFO, WARNING or ERROR"
    assert lorong(tmp_path, "--log-level", "warning", "cities", "list").returncode == 0


def test_a_bad_city_says_what_a_city_id_is_and_names_a_field_once(tmp_path: Path) -> None:
    """Tried as a new user: ``cities add "Bad Id"`` showed only the pattern, and ``--centre 200,1``
    said ``centre: centre: (200.0, 1.0) ...``."""
    line = one_line(lorong(tmp_path, "cities", "add", "Bad Id", "--name", "Bad", "--timezone", "Asia/Makassar"), 2)
    assert line == ("error: id: 'Bad Id' is not a city id: lower-case letters a-z, digits and '-', at most 32, "
                    "e.g. jakarta (^[a-z0-9][a-z0-9-]{0,31}$)")
    line = one_line(lorong(tmp_path, "cities", "add", "bad", "--name", "Bad", "--timezone", "Asia/Makassar",
                           "--centre", "200,1"), 2)
    assert line == "error: centre: (200.0, 1.0) is not a WGS84 latitude, longitude"


def test_error_lines_keep_square_brackets(tmp_path: Path) -> None:
    """Rich took ``[a-z0-9]`` and ``[bold]`` in an error message for markup and dropped them."""
    line = one_line(lorong(tmp_path, "cities", "add", "Bad City!", "--name", "Bad", "--timezone", "Asia/Makassar"), 2)
    assert "^[a-z0-9][a-z0-9-]{0,31}$" in line, line
    line = one_line(lorong(tmp_path, "devices", "show", "[bold]x"), 1)
    assert "'[bold]x'" in line, line
    line = one_line(lorong(tmp_path, "devices", "retire", "[red]y"), 1)
    assert "'[red]y'" in line, line


def test_export_of_an_unknown_kecamatan_one_line_exit_2(tmp_path: Path, influx: InfluxClient) -> None:
    """``--kecamatan nowhere`` wrote an empty file with exit 0; the API answers 422 naming the known ones.
    Now the same refusal (:func:`lorong.storage.kecamatan.match_kecamatan`), and no file."""
    env = {"LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database}
    assert lorong(tmp_path, "storage", "retention", "apply", **env).returncode == 0  # the daily policy
    for device, kec in (("B1", "Tamalate"), ("B2", "Rappocini")):
        assert lorong(tmp_path, "devices", "add", device, "--kind", "bin", "--depth-mm", "1000",
                      "--kecamatan", kec).returncode == 0
    out = tmp_path / "r.csv"
    line = one_line(lorong(tmp_path, "export", "readings", "--from", "2026-01-01", "--to", "2026-01-02",
                           "--resolution", "daily", "--kecamatan", "nowhere", "--out", str(out), **env), 2)
    assert line == "error: --kecamatan: no device is in 'nowhere'; known kecamatan: Rappocini, Tamalate"
    assert not out.exists()
    ok = lorong(tmp_path, "export", "readings", "--from", "2026-01-01", "--to", "2026-01-02", "--resolution", "daily",
                "--kecamatan", "tamalate", "--out", str(out), **env)  # matched without case, as the API does
    assert ok.returncode == 0, ok.stderr
    assert out.read_text().startswith("time,device_id,city,kecamatan,")
    # a kecamatan of another city than --city's wrote a header-only file with exit 0
    assert lorong(tmp_path, "cities", "add", "jakarta", "--name", "Jakarta", "--timezone", "Asia/Jakarta",
                  **env).returncode == 0
    assert lorong(tmp_path, "devices", "add", "J1", "--kind", "bin", "--depth-mm", "1000", "--kecamatan", "Gambir",
                  "--city", "jakarta", **env).returncode == 0
    line = one_line(lorong(tmp_path, "export", "readings", "--from", "2026-01-01", "--to", "2026-01-02",
                           "--resolution", "daily", "--city", "makassar", "--kecamatan", "gambir",
                           "--out", str(tmp_path / "m.csv"), **env), 2)
    assert line == "error: --kecamatan: no device of makassar is in 'gambir'; known kecamatan: Rappocini, Tamalate"


def test_export_of_more_than_400_days_one_line_exit_2(tmp_path: Path, influx: InfluxClient) -> None:
    """1970..2100 daily ran unbounded (114 s); the API caps a range at 400 days, and so does the CLI."""
    env = {"LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database}
    out = tmp_path / "r.csv"
    line = one_line(lorong(tmp_path, "export", "readings", "--from", "1970-01-01T00:00:00Z",
                           "--to", "2100-01-01T00:00:00Z", "--resolution", "daily", "--out", str(out), **env), 2)
    assert line == "error: --from/--to: the range is 47482 days long: ask for at most 400 days"
    assert not out.exists()
    assert lorong(tmp_path, "storage", "retention", "apply", **env).returncode == 0  # the daily policy
    ok = lorong(tmp_path, "export", "readings", "--from", "2025-01-01T00:00:00Z", "--to", "2026-02-05T00:00:00Z",
                "--resolution", "daily", "--out", str(out), **env)  # exactly 400 days is allowed
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (("analytics", "route", "--vehicles", "0"),
     "error: Invalid value for '--vehicles': Input should be greater than or equal to 1"
     " (see python -m lorong.cli analytics route --help)"),
    (("devices", "list", "--colour", "red"),
     "error: No such option: --colour (see python -m lorong.cli devices list --help)"),
    (("nosuchroom",), "error: No such command 'nosuchroom'. (see python -m lorong.cli --help)"),
    # tried as a new user: `demo --city small` said "small: No such file or directory" where `sim scenario`
    # takes a packaged city's name, and `sim scenario --city README.md` said "no packaged city"
    (("demo", "--city", "nosuch"),
     "error: no packaged city 'nosuch'; known: banyuwangi-like, jakarta-like, makassar, mwf-town, small"),
    # tried as a new user: a negative duration started the demo and stopped it at once, exit 0
    (("demo", "--duration", "-5"),
     "error: Invalid value for '--duration': Input should be greater than or equal to 0"
     " (see python -m lorong.cli demo --help)"),
])
def test_a_usage_error_is_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    """A bad option is one ``error:`` line like every other fault, not a boxed usage screen (the
    program's name is how it was started: ``python -m lorong.cli`` here, ``lorong`` for a user)."""
    assert one_line(lorong(tmp_path, *args), 2) == expected


@pytest.mark.parametrize("name", ["keep.csv", "keep.parquet"])
def test_a_failed_export_keeps_the_old_file_and_leaves_no_partial_one(tmp_path: Path, name: str) -> None:
    """InfluxDB down: the export truncated an existing file to 0 bytes (and left an empty new one).
    Now the rows go to a temporary file beside the target, renamed over it only when complete."""
    url = f"http://127.0.0.1:{stack.free_port()}"
    fmt = name.rsplit(".", 1)[1]
    (tmp_path / name).write_bytes(b"old data\n")

    def files() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name not in ("l.db", "var"))  # the test's registry

    before = files()
    for out in (name, "new." + fmt):
        line = one_line(lorong(tmp_path, "export", "readings", "--from", "2026-12-05", "--to", "2026-12-06",
                               "--format", fmt, "--out", out, LORONG_INFLUX__URL=url), 1)
        assert line.startswith(f"error: InfluxDB unavailable: influx {url}/"), line
        assert line.endswith("(is it running? check LORONG_INFLUX__URL)"), line
    assert (tmp_path / name).read_bytes() == b"old data\n"
    assert files() == before == [name]  # no new file, no partial one


@pytest.mark.parametrize(("args", "expected"), [
    (("--format", "xlsx"), "error: --format 'xlsx': use csv or parquet"),
    (("--resolution", "weekly"), "error: --resolution 'weekly': use one of raw, hourly, daily"),
    (("--from", "2026-12-06", "--to", "2026-12-05"),
     "error: --from/--to: export start 2026-12-06T00:00:00+00:00 is not before end 2026-12-05T00:00:00+00:00"),
    (("--format", "parquet"),  # into r.csv: a CSV name on a Parquet file (the other way round too)
     "error: --out r.csv is a .csv name but --format is parquet: name the file .parquet or pass --format csv"),
])
def test_export_usage_errors_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    """These exited 1 (and printed on stdout) while every other usage error exits 2."""
    span = () if "--from" in args else ("--from", "2026-12-05", "--to", "2026-12-06")
    out = tmp_path / "r.csv"
    line = one_line(lorong(tmp_path, "export", "readings", *span, *args, "--out", str(out),
                           LORONG_INFLUX__URL=f"http://127.0.0.1:{stack.free_port()}"), 2)
    assert line == expected
    assert not out.exists()


def test_backfill_of_a_reversed_range_one_line_exit_2(tmp_path: Path) -> None:
    """A usage error, refused before InfluxDB is asked (it exited 1, on stdout)."""
    line = one_line(lorong(tmp_path, "storage", "retention", "backfill", "--from", "2026-12-06T00:00:00",
                           "--to", "2026-12-01T00:00:00",
                           LORONG_INFLUX__URL=f"http://127.0.0.1:{stack.free_port()}"), 2)
    assert line == ("error: --from/--to: backfill start 2026-12-06T00:00:00+00:00 is not before end "
                    "2026-12-01T00:00:00+00:00")


def test_export_of_an_unknown_city_one_line_exit_2(tmp_path: Path, influx: InfluxClient) -> None:
    """``--city JAKARTA`` or ``--city surabaya`` wrote a header-only file with exit 0. Now refused
    like an unknown kecamatan, naming the registry's cities; a city id is matched without case."""
    env = {"LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database}
    out = tmp_path / "r.csv"
    for city in ("JAKARTA", "surabaya"):
        line = one_line(lorong(tmp_path, "export", "readings", "--from", "2026-12-05", "--to", "2026-12-06",
                               "--city", city, "--out", str(out), **env), 2)
        assert line == f"error: --city: no city {city!r} in the registry; known cities: makassar"
    assert not out.exists()
    ok = lorong(tmp_path, "export", "readings", "--from", "2026-12-05", "--to", "2026-12-06", "--city", "Makassar",
                "--out", str(out), **env)
    assert ok.returncode == 0, ok.stderr
    assert out.read_text().startswith("time,device_id,city,")


def test_lists_stay_readable_in_an_80_column_terminal(tmp_path: Path) -> None:
    """``cities list``, ``devices list`` and ``api token list`` cut every cell of a city table at 80
    columns (``banyuwan…``, ``Asia/Jak…``): an SSH session could not read ids or zones. Long cells fold
    onto the next line instead, and every character is there."""
    add = lorong(tmp_path, "cities", "add", "banyuwangi", "--name", "Banyuwangi", "--timezone", "Asia/Jakarta",
                 "--centre", "-8.2192,114.3691")
    assert add.returncode == 0, add.stderr
    assert lorong(tmp_path, "api", "token", "create", "--name", "petugas-kebersihan-banyuwangi", "--role", "crew",
                  "--city", "banyuwangi").returncode == 0
    for args in (("cities", "list"), ("devices", "list"), ("api", "token", "list")):
        shown = lorong(tmp_path, *args, COLUMNS="80")
        assert shown.returncode == 0, shown.stderr
        assert "…" not in shown.stdout, shown.stdout
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert lorong(tmp_path, "cities", "list", COLUMNS="80").stdout.strip().splitlines()[-1] == "2 cities"


def test_api_on_a_port_in_use_one_line_exit_1(tmp_path: Path) -> None:
    """``lorong api`` on a port another program listens on printed uvicorn's log line
    (``ERROR:    [Errno 98] error while attempting to bind ...``) and exited 3. Now one line naming the
    address and the setting to change, exit 1, and the other program keeps its port."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = lorong(tmp_path, "api", LORONG_API__PORT=str(port))
        assert one_line(proc, 1) == (f"error: http://127.0.0.1:{port} is already in use (another `lorong api` or "
                                     "`lorong demo`?): stop it, or set LORONG_API__PORT (or --port)")
        assert proc.stdout == ""


def test_lists_keep_ids_codes_and_times_whole_in_an_80_column_terminal(tmp_path: Path) -> None:
    """At 80 columns (an SSH session, or any pipe: rich then takes 80) ``devices list`` folded every
    cell into 3-5 letter pieces, nine lines per device (``2026-1`` / ``2-07T0`` / ``2:15:04`` ...),
    ``cities list`` split ``Asia/Maka`` / ``ssar``, and ``ingest dead-letters list`` cut the reason
    code itself (``unknown…``, ``bad_val…``) and the device id. Ids, codes, zones, coordinates and times
    are now whole on one line; only free text (a kecamatan, a dead letter's detail) wraps, at spaces."""
    import sqlite3
    from datetime import UTC, datetime

    from ingest.deadletter import DeadLetter, DeadLetterStore
    from lorong.storage.db import make_engine, session_factory

    assert lorong(tmp_path, "cities", "add", "banyuwangi", "--name", "Banyuwangi", "--timezone", "Asia/Jakarta",
                  "--centre", "-8.2192,114.3691", "--analytics", '{"collection_times": ["06:30"]}').returncode == 0
    for dev, city in (("24E124BB00000002", "makassar"), ("BWI-BIN-0001", "banyuwangi")):
        added = lorong(tmp_path, "devices", "add", dev, "--kind", "bin", "--depth-mm", "1200", "--city", city,
                       "--kecamatan", "Kepulauan Sangkarrang", "--street", "Jalan Lorong Pasar Sentral Blok B 12")
        assert added.returncode == 0, added.stderr
    with sqlite3.connect(tmp_path / "l.db") as db:
        db.execute("UPDATE devices SET last_seen = '2026-12-07 02:15:04.000000' WHERE id = '24E124BB00000002'")
    at = datetime(2026, 12, 7, 2, 18, 42, tzinfo=UTC)
    DeadLetterStore(session_factory(make_engine(f"sqlite:///{tmp_path / 'l.db'}"))).add_many([
        DeadLetter("lorong/v1/NOPE-SENSOR-0001/up", b'{"metrics": {"distance": 500}}', "unknown_device",
                   "'NOPE-SENSOR-0001' is not registered (or retired)", at, "NOPE-SENSOR-0001"),
        DeadLetter("v3/lorong-mks@ttn/devices/eui-24e124bb00000002/up", b"{}", "bad_value",
                   "lorong-json: metric 'distance' value 'lots' is not a number", at, "24E124BB00000002")])

    def shown(*args: str) -> list[str]:
        proc = lorong(tmp_path, *args, COLUMNS="80")
        assert proc.returncode == 0, proc.stderr
        assert "…" not in proc.stdout, proc.stdout
        assert max(len(line) for line in proc.stdout.splitlines()) <= 80, proc.stdout
        return proc.stdout.splitlines()

    def line_with(lines: list[str], *words: str) -> str:
        found = [line for line in lines if all(w in line for w in words)]
        assert found, (words, "\n".join(lines))
        return found[0]

    devices = shown("devices", "list")
    line_with(devices, "id", "kind", "city", "kecamatan", "status", "last seen (UTC)")  # headers whole
    line_with(devices, "24E124BB00000002", "bin", "makassar", "active", "2026-12-07 02:15")
    line_with(devices, "BWI-BIN-0001", "banyuwangi", "active")
    assert sum("24E124BB00000002" in line for line in devices) == 1
    assert devices[-1] == "2 device(s)"
    cities = shown("cities", "list")
    line_with(cities, "banyuwangi", "Banyuwangi", "Asia/Jakarta", "-8.2192,114.3691")
    line_with(cities, "makassar", "Makassar", "Asia/Makassar")
    line_with(cities, "banyuwangi", '"collection_times": ["06:30"]')
    assert cities[-1] == "2 cities"
    letters = shown("ingest", "dead-letters", "list")
    line_with(letters, "2026-12-07 02:18:42", "unknown_device", "NOPE-SENSOR-0001")
    line_with(letters, "2026-12-07 02:18:42", "bad_value", "24E124BB00000002")
    line_with(letters, "v3/lorong-mks@ttn/devices/eui-24e124bb00000002/up")
    line_with(letters, "'lots'", "is", "not", "a", "number")
    assert letters[-1] == "2 pending of 2; pending by reason: bad_value 1, unknown_device 1"


@pytest.mark.parametrize(("args", "code", "expected"), [
    (("stack", "reload"), 1, "error: no broker started by `lorong stack up` is running"),
    (("storage", "retention", "show"), 1, "error: InfluxDB unavailable: influx http://127.0.0.1:"),
    (("sim", "load", "."), 2, "error: . has no devices.json and messages.jsonl (write one with `lorong sim scenario`)"),
])
def test_errors_of_stack_storage_and_sim_go_to_stderr(tmp_path: Path, args: tuple[str, ...], code: int,
                                                      expected: str) -> None:
    """``lorong stack``, ``storage retention`` and ``sim`` printed their ``error:`` line on stdout: a
    script reading stdout took it for output, ``2>/dev/null`` did not hide it, and a log of stderr
    missed it. Every command's error line is on stderr, with nothing on stdout."""
    proc = lorong(tmp_path, *args, LORONG_INFLUX__URL=f"http://127.0.0.1:{stack.free_port()}")
    assert one_line(proc, code).startswith(expected)
    assert proc.stdout == ""


def test_a_misspelt_setting_is_named_not_silently_ignored(tmp_path: Path) -> None:
    """``LORONG_MQTT__PROT=1884`` (or ``LORONG_MQTTPORT``) was ignored without a word: the command ran on
    port 1883 and the operator looked for the fault elsewhere. A ``LORONG_`` variable that is no setting
    gets one warning line naming the closest setting; the command still runs (a warning, since other
    tools may share the prefix)."""
    proc = lorong(tmp_path, "cities", "list", LORONG_MQTT__PROT="1884", LORONG_MQTTPORT="1884",
                  LORONG_DEBUG="0", LORONG_GRAFANA_TOKEN="x", LORONG_DASHBOARDS_DIR="d", LORONG_API__PORT="8001")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "warning: LORONG_MQTTPORT is not a Lorong setting and is ignored (did you mean LORONG_MQTT__PORT?)",
        "warning: LORONG_MQTT__PROT is not a Lorong setting and is ignored (did you mean LORONG_MQTT__PORT?)"]
    assert proc.stdout.strip().splitlines()[-1] == "1 city"
    quiet = lorong(tmp_path, "cities", "list", LORONG_NOTIFY__TELEGRAM_CHATS="[]", lorong_api__port="8001")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # names are matched without case


def test_stack_up_on_a_port_in_use_names_the_setting(tmp_path: Path) -> None:
    """``lorong stack up`` (and so ``lorong demo``) with the MQTT port taken said "port 1883 is already
    in use: another broker (or service) listens there" on stdout, without the setting that moves it.
    One line on stderr, naming LORONG_MQTT__PORT; nothing is left running."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = lorong(tmp_path, "stack", "up", LORONG_MQTT__PORT=str(port),
                      LORONG_INFLUX__URL=f"http://127.0.0.1:{stack.free_port()}")
    assert one_line(proc, 1) == (f"error: port {port} is already in use: another broker (or service) listens "
                                 "there; stop it, or set LORONG_MQTT__PORT to a free port")
    assert not list((tmp_path / "var" / "run").glob("*.pid"))


def test_a_city_file_that_is_not_yaml_or_json_is_named(tmp_path: Path) -> None:
    """Tried as a new user: ``sim scenario --city README.md`` said "no packaged city 'README.md'"
    although the file is there: it is there, and it is not a city file."""
    (tmp_path / "README.md").write_text("# notes\n")
    assert one_line(lorong(tmp_path, "sim", "scenario", "--city", "README.md", "--out", "x"), 2) == (
        "error: README.md: a city file is YAML or JSON (.yaml, .yml, .json); or name a packaged city "
        "(banyuwangi-like, jakarta-like, makassar, mwf-town, small)")
