"""``lorong ingest formats | replay | dead-letters list | dead-letters replay``.

The dead-letter replay runs end to end against the real influxd of tests/conftest.py: a message
from an unregistered device is dead-lettered, the device is registered, the replay writes its
point to InfluxDB and marks the dead letter replayed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from devices.registry import DeviceIn, RegistryLookup, add_device
from ingest.cli import _csv_devices
from ingest.codecs import CODECS
from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.formats import FORMATS
from ingest.pipeline import Pipeline
from lorong.cli import app as lorong
from lorong.core.model import Message
from lorong.storage.influx import InfluxClient
from tests.conftest import DATA

RX = "2026-03-01T00:00:00+00:00"
EM310 = json.loads((DATA / "thingsboard-data-converters/VENDORS/Milesight/EM310-UDL/ChirpStack/uplink/payload.json")
                   .read_text())
STATUS = (DATA / "chirpstack-docs/event_status.json").read_bytes()
AIRROHR = json.loads((DATA / "bashair/measurement.json").read_text())

DEVICES_CSV = """id,kind,codec,kecamatan,depth_mm,blind_zone_mm,status
MKS-BIN-0001,bin,,Wajo,1000,150,active
1000000000000001,bin,milesight-em310-udl,Tallo,2500,200,active
esp8266-11545355,air,,Panakkukang,,,active
MKS-AIR-07,air,,Mariso,,,active
MKS-AIR-OLD,air,,Mariso,,,retired
"""


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(lorong, args, env=env, catch_exceptions=False)
    return result


def test_formats_lists_formats_and_codecs() -> None:
    result = invoke(["ingest", "formats"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("format ")] == list(FORMATS)
    assert "application/+/device/+/event/+" in result.stdout
    assert sorted(ln.split()[1] for ln in lines if ln.startswith("codec ")) == sorted(CODECS)


def test_decode_of_a_bad_codec_or_payload_is_one_error_line() -> None:
    """Tried as a new user: ``ingest decode --codec nope`` printed a JSON object, not the ``error:``
    line every other command gives, and a long error wrapped at 80 columns in a pipe."""
    result = invoke(["ingest", "decode", "--codec", "nope", "--fport", "1", "00"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: unknown_codec: 'nope'; known: ")
    assert "milesight-em310-udl" in result.output and len(result.output) > 80  # one line, not wrapped
    result = invoke(["ingest", "decode", "--codec", "milesight-em310-udl", "--fport", "85", "zz"])
    assert (result.exit_code, result.output) == (1, "error: bad_frame: payload is not hex: non-hexadecimal number "
                                                    "found in fromhex() arg at position 0\n")


def _capture(tmp_path: Path) -> Path:
    native = {"time": "2026-02-28T10:00:00+00:00", "seq": 1, "metrics": {"distance": {"value": 575, "unit": "mm"}}}
    rows = [
        "# bench capture, Makassar",
        "lorong/v1/MKS-BIN-0001/up\t" + json.dumps(native),
        "airrohr/bridge\t" + json.dumps(AIRROHR),
        "application/ca739e26/device/1000000000000001/event/up\t" + json.dumps(EM310),
        'senml/MKS-AIR-07\t[{"bn":"MKS-AIR-07/","bt":1772322000,"n":"pm25","u":"ug/m3","v":41.5}]',
        "lorong/v1/MKS-BIN-0001/up\t" + json.dumps(native),               # same seq: duplicate
        "lorong/v1/MKS-AIR-OLD/up\t" + json.dumps({"metrics": {"pm25": 3.0}}),  # retired
        "no tab on this line",
        "",
        "application/ca739e26/device/1000000000000001/event/status\tbase64:" + base64.b64encode(STATUS).decode(),
    ]
    path = tmp_path / "capture.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "devices.csv").write_text(DEVICES_CSV, encoding="utf-8")
    return path


def test_replay_capture_offline(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    env = {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'absent.db'}"}
    result = invoke(["ingest", "replay", str(capture), "--devices", str(tmp_path / "devices.csv"),
                     "--received-at", RX], env)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in result.stdout.splitlines()]
    by_line: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_line.setdefault(r["line"], []).append(r)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert [(r["metric"], r["value"]) for r in by_line[2]] == [("distance", 575.0), ("fillingLevel", 0.5)]
    assert by_line[2][0]["ts"] == "2026-02-28T10:00:00+00:00"
    assert {r["metric"]: r["value"] for r in by_line[3]} == pytest.approx(
        {"pm10": 6.35, "pm25": 3.83, "temperature": 26.43, "pressure": 995.0519, "relativeHumidity": 0.2377,
         "rssi": -50.0})
    assert all(r["device_id"] == "esp8266-11545355" and r["ts"] == RX for r in by_line[3])
    assert {r["metric"]: r["value"] for r in by_line[4]}["distance"] == 2116.0
    assert by_line[5] == [{"line": 5, "topic": "senml/MKS-AIR-07", "device_id": "MKS-AIR-07", "metric": "pm25",
                           "value": 41.5, "unit": "ug/m3", "ts": "2026-02-28T23:40:00+00:00"}]
    assert by_line[6] == [{"line": 6, "topic": "lorong/v1/MKS-BIN-0001/up", "duplicate": True}]
    assert by_line[7][0]["reject"] == "unknown_device"
    assert by_line[8][0]["reject"] == "bad_capture_line"
    assert by_line[10][0]["reject"] == "not_an_uplink"
    assert result.stderr.strip() == "8 messages: 4 accepted, 3 rejected, 1 duplicates"
    assert not (tmp_path / "absent.db").exists(), "an offline replay must write nothing"


def test_replay_with_forced_format(tmp_path: Path) -> None:
    capture = tmp_path / "senml.tsv"
    capture.write_text('bench/station-7\t[{"n":"MKS-AIR-07/pm10","u":"ug/m3","v":1999.9,"t":-5}]\n')
    (tmp_path / "devices.csv").write_text(DEVICES_CSV)
    result = invoke(["ingest", "replay", str(capture), "--format", "senml", "--devices",
                     str(tmp_path / "devices.csv"), "--received-at", RX])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert record["reject"] == "bad_topic"  # the senml parser insists on senml/<device>
    result = invoke(["ingest", "replay", str(capture), "--format", "nope", "--devices", str(tmp_path / "devices.csv")])
    assert result.exit_code == 1 and "unknown format 'nope'" in result.stdout


def test_replay_without_registry_or_csv_fails_clearly(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    result = invoke(["ingest", "replay", str(capture)], {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 1
    assert "--devices" in result.stdout
    assert not (tmp_path / "x.db").exists()


def test_replay_uses_the_registry(tmp_path: Path, db_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-AIR-07", kind="air", kecamatan="Mariso"))
    capture = tmp_path / "c.tsv"
    capture.write_text('senml/MKS-AIR-07\t[{"n":"pm25","u":"ug/m3","v":12,"t":-60}]\n')
    result = invoke(["ingest", "replay", str(capture), "--received-at", RX], {"LORONG_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert (record["device_id"], record["metric"], record["value"], record["ts"]) == (
        "MKS-AIR-07", "pm25", 12.0, "2026-02-28T23:59:00+00:00")


def test_dead_letters_list(db_url: str, sessions: sessionmaker[Session]) -> None:
    at = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    DeadLetterStore(sessions).add_many([
        DeadLetter("lorong/v1/MKS-AIR-99/up", b'{"metrics": {"pm25": 1}}', "unknown_device", "not registered", at),
        DeadLetter("airrohr/x", b"{", "bad_json", "Expecting property name", at),
    ])
    result = invoke(["ingest", "dead-letters", "list"], {"LORONG_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "lorong/v1/MKS-AIR-99/up" in result.stdout and "unknown_device" in result.stdout
    assert "2026-03-01 07:30:00" in result.stdout
    assert "2 pending of 2; pending by reason: bad_json 1, unknown_device 1" in result.stdout
    result = invoke(["ingest", "dead-letters", "list", "--reason", "bad_json"],
                    {"LORONG_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert "airrohr/x" in result.stdout and "MKS-AIR-99" not in result.stdout
    result = invoke(["ingest", "dead-letters", "list", "--reason", "bad_jsn"],
                    {"LORONG_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no pending dead letters with reason 'bad_jsn' (--all includes replayed ones)" in result.stdout
    assert "2 pending of 2; pending by reason: bad_json 1, unknown_device 1" in result.stdout  # the reasons there are
    assert "received (UTC)" not in result.stdout  # no empty table


@pytest.mark.integration
def test_dead_letter_replay_end_to_end(db_url: str, sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    received = datetime.now(UTC).replace(microsecond=0)
    store = DeadLetterStore(sessions)
    body = {"time": received.isoformat(), "metrics": {"pm25": 41.5, "temperature": 31.2}}
    store.add_many([
        DeadLetter("lorong/v1/MKS-AIR-99/up", json.dumps(body).encode(), "unknown_device", "not registered", received),
        DeadLetter("airrohr/x", b"{", "bad_json", "Expecting property name", received),
    ])
    env = {"LORONG_DATABASE_URL": db_url, "LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database}

    first = invoke(["ingest", "dead-letters", "replay"], env)
    assert first.exit_code == 0, first.output
    assert "replayed 0 (0 points written); 2 still rejected: bad_json 1, unknown_device 1" in first.stdout
    assert store.count(pending_only=True) == 2

    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-AIR-99", kind="air", kecamatan="Tamalate"))
    second = invoke(["ingest", "dead-letters", "replay", "--reason", "unknown_device"], env)
    assert second.exit_code == 0, second.output
    assert "replayed 1 (1 points written); 0 still rejected" in second.stdout

    rows = influx.records('SELECT "pm25", "temperature", "kecamatan" FROM "air_quality" '
                          'WHERE "device_id" = \'MKS-AIR-99\'')
    assert len(rows) == 1
    assert (rows[0]["pm25"], rows[0]["temperature"]) == (41.5, 31.2)
    assert rows[0]["time"] == int(received.timestamp() * 1000)
    assert rows[0]["kecamatan"] == "Tamalate"
    assert store.count(pending_only=True) == 1
    (left,) = store.list()
    assert left.reason == "bad_json"
    (done,) = [r for r in store.list(pending_only=False) if r.replayed_at is not None]
    assert done.topic == "lorong/v1/MKS-AIR-99/up"

    third = invoke(["ingest", "dead-letters", "replay"], env)
    assert "replayed 0 (0 points written); 1 still rejected: bad_json 1" in third.stdout
    assert len(influx.records('SELECT "pm25" FROM "air_quality"')) == 1
    typo = invoke(["ingest", "dead-letters", "replay", "--reason", "bad_jsn"], env)
    assert typo.exit_code == 0, typo.output
    assert ("no pending dead letters with reason 'bad_jsn'; all dead letters by reason: bad_json 1, "
            "unknown_device 1") in typo.stdout


def test_replay_prints_valid_json_for_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "devices.csv").write_text(DEVICES_CSV)
    capture = tmp_path / "latin1.tsv"
    capture.write_bytes(b'lorong/v1/MKS-BIN-0001/up\t{"metrics":{"distance":{"value":5\xff\xfe0}}}\n'
                        b'lorong/v1/MKS-\xe9BIN/up\t{"x":1}\n'
                        b'senml/MKS-AIR-07\t[{"n":"pm25","u":"ug/m3","v":12,"t":-60}]\n')
    result = invoke(["ingest", "replay", str(capture), "--devices", str(tmp_path / "devices.csv"),
                     "--received-at", RX])
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in result.stdout_bytes.decode("utf-8").splitlines()]
    assert records[0] == {"line": 1, "topic": "lorong/v1/MKS-BIN-0001/up", "reject": "bad_json",
                          "detail": "lorong-json: payload is not UTF-8 (invalid start byte at byte 33)"}
    assert records[1]["topic"] == "lorong/v1/MKS-\\xe9BIN/up"  # the byte 0xE9, shown escaped
    assert (records[2]["device_id"], records[2]["value"]) == ("MKS-AIR-07", 12.0)
    assert result.stderr.strip() == "3 messages: 1 accepted, 2 rejected, 0 duplicates"


def test_dead_letters_summary_counts_pending_and_list_shows_payloads(db_url: str,
                                                                    sessions: sessionmaker[Session]) -> None:
    """Issue 14, item 29: the per-reason summary counts pending rows only (a replayed row is
    listed apart), and ``list --payload`` prints each payload (text as is, other bytes as hex)."""
    at = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    store = DeadLetterStore(sessions)
    store.add_many([
        DeadLetter("lorong/v1/MKS-AIR-99/up", b'{"metrics": {"pm25": 1}}', "unknown_device", "not registered", at),
        DeadLetter("lorong/v1/MKS-AIR-98/up", b'{"metrics": {"pm25": 2}}', "unknown_device", "not registered", at),
        DeadLetter("airrohr/x", b"\xff\x00{", "bad_json", "not UTF-8", at),
    ])
    first = min(r.id for r in store.list())
    store.mark_replayed([first], at)
    env = {"LORONG_DATABASE_URL": db_url, "COLUMNS": "200"}
    result = invoke(["ingest", "dead-letters", "list"], env)
    assert result.exit_code == 0, result.output
    assert "2 pending of 3; pending by reason: bad_json 1, unknown_device 1; replayed: unknown_device 1" \
        in result.stdout
    shown = invoke(["ingest", "dead-letters", "list", "--payload"], env)
    assert shown.exit_code == 0, shown.output
    assert '{"metrics": {"pm25": 2}}' in shown.stdout
    assert "ff007b" in shown.stdout  # not text: hex
    # each row names its device (issue 14, item 30): the sender the dead letter was stored with
    store.add_many([DeadLetter("v3/app@ttn/devices/eui-24e124/up", b"{}", "bad_value", "distance out of range", at,
                               "24E124BB00000001")])
    listed = invoke(["ingest", "dead-letters", "list", "--reason", "bad_value"], env)
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if "reason" in line)
    row = next(i for i, line in enumerate(lines) if "bad_value" in line and "24E124BB00000001" in line)
    assert "device" in header and lines[row + 1].strip() == "v3/app@ttn/devices/eui-24e124/up"  # its topic under it


def test_a_device_without_a_city_gets_the_deployments_city(tmp_path: Path, db_url: str,
                                                            sessions: sessionmaker[Session]) -> None:
    """A device that names no city (a registry CSV without ``city_id``, as `lorong ingest replay
    --devices` reads) takes the deployment's city (``LORONG_CITY__ID``) from the lookup itself, so its
    points carry that ``city`` tag (the pipeline patched a None with ``or ""``: no city tag at all)."""
    (tmp_path / "devices.csv").write_text(DEVICES_CSV)
    offline = _csv_devices(tmp_path / "devices.csv", default_city="jakarta")
    info = offline.get("MKS-BIN-0001")
    assert info is not None and info.city == "jakarta"
    msg = Message("lorong/v1/MKS-BIN-0001/up", json.dumps({"metrics": {"distance": 575}}).encode(),
                  datetime(2026, 3, 1, tzinfo=UTC))
    lines = Pipeline(offline).process(msg).lines
    assert len(lines) == 1 and lines[0].startswith("waste_container,city=jakarta,device_id=MKS-BIN-0001,"), lines
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-BIN-0002", kind="bin", depth_mm=1000, city_id="makassar"))
    assert RegistryLookup(sessions, default_city="jakarta").get("MKS-BIN-0002").city == "makassar"  # type: ignore[union-attr]
