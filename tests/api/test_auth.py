"""Tokens and roles: every read needs a token, every write refuses the wrong role (403) and no token (401)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from api.auth import hash_token
from api.cli import app as api_cli
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow, ApiTokenRow, CollectionRow, DeviceRow
from tests.api.conftest import ROLES, bearer
from tests.api.seed import add_bin, fleet, raise_alert

pytestmark = pytest.mark.integration

READS = ["/devices", "/devices/MKS-BIN-0001", "/bins", "/bins/MKS-BIN-0001", "/bins/MKS-BIN-0001/readings",
         "/air/stations", "/air/stations/MKS-AIR-01", "/air/stations/MKS-AIR-01/readings", "/alerts", "/alerts/1",
         "/routes"]

_n = itertools.count(100)


def _new_bin(sessions: sessionmaker[Session]) -> str:
    device_id = f"MKS-BIN-{next(_n):04d}"
    with sessions.begin() as s:
        add_bin(s, device_id)
    return device_id


def _new_alert(sessions: sessionmaker[Session], type_: str = "bin_full") -> int:
    device_id = _new_bin(sessions)
    with sessions.begin() as s:
        return raise_alert(s, device_id, type_, "major", utcnow(), fillingLevel=0.9).id


def _new_token(sessions: sessionmaker[Session]) -> int:
    from api.auth import create_token

    with sessions.begin() as s:
        return create_token(s, "victim", "officer")[0].id


# (method, path builder, body builder, roles allowed, success status)
WRITES: list[tuple[str, Callable[[Any], str], Callable[[], Any], set[str], int]] = [
    ("POST", lambda s: "/devices", lambda: {"id": f"NEW-{next(_n)}", "kind": "bin", "depth_mm": 900},
     {"technician", "admin"}, 201),
    ("PATCH", lambda s: f"/devices/{_new_bin(s)}", lambda: {"street": "Jl. Penghibur"}, {"technician", "admin"}, 200),
    ("DELETE", lambda s: f"/devices/{_new_bin(s)}", lambda: None, {"technician", "admin"}, 200),
    ("POST", lambda s: f"/alerts/{_new_alert(s)}/ack", lambda: None, {"crew", "supervisor", "admin"}, 200),
    ("POST", lambda s: f"/alerts/{_new_alert(s)}/clear", lambda: {"reason": "emptied"},
     {"crew", "supervisor", "admin"}, 200),
    ("POST", lambda s: f"/alerts/{_new_alert(s, 'pm25_high')}/ack", lambda: None, {"officer", "admin"}, 200),
    ("POST", lambda s: f"/alerts/{_new_alert(s, 'offline')}/clear", lambda: {"reason": "antenna fixed"},
     {"technician", "admin"}, 200),
    ("POST", lambda s: f"/bins/{_new_bin(s)}/emptied", lambda: None, {"crew", "supervisor", "admin"}, 200),
    ("POST", lambda s: f"/bins/{_new_bin(s)}/cant-empty", lambda: {"reason": "blocked"},
     {"crew", "supervisor", "admin"}, 200),
    ("GET", lambda s: "/tokens", lambda: None, {"admin"}, 200),
    ("POST", lambda s: "/tokens", lambda: {"name": "Budi", "role": "crew"}, {"admin"}, 201),
    ("DELETE", lambda s: f"/tokens/{_new_token(s)}", lambda: None, {"admin"}, 200),
]


def test_every_read_needs_a_token_and_every_role_may_read(client: httpx.Client, sessions: sessionmaker[Session],
                                                          auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    for path in READS:
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["detail"]
        for role in ROLES:
            assert client.get(path, headers=auth(role)).status_code == 200, (path, role)


def test_open_paths_need_no_token(client: httpx.Client) -> None:
    for path in ("/metrics", "/", "/web/app.js", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    health = client.get("/health")  # no broker in these tests: degraded (503), and no details without a token
    assert health.status_code == 503 and health.json() == {"status": "degraded"}


@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok"), WRITES,
                         ids=["create-device", "change-device", "retire-device", "ack-alert", "clear-alert",
                              "ack-air-alert", "clear-device-alert", "bin-emptied", "bin-cant-empty",
                              "list-tokens", "create-token", "revoke-token"])
def test_write_roles(method: str, path: Callable[[Any], str], body: Callable[[], Any], allowed: set[str], ok: int,
                     client: httpx.Client, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    target = path(sessions)
    r = client.request(method, target, json=body())
    assert r.status_code == 401, r.text
    for role in ROLES:
        if role not in allowed:
            r = client.request(method, target, json=body(), headers=bearer(tokens[role]))
            assert r.status_code == 403, (role, r.text)
            assert "needs a token with role" in r.json()["detail"]
            article = "an" if role in ("officer", "admin") else "a"
            assert r.json()["detail"].startswith(f"{article} {role} token cannot do this; "), r.text
    with sessions() as s:  # refused requests changed nothing
        assert s.scalars(select(DeviceRow).where(DeviceRow.id.like("NEW-%"))).all() == []
        assert s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.action != "opened")).all() == []
        assert s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).all() == []
        assert s.scalars(select(CollectionRow)).all() == []
        assert s.scalars(select(ApiTokenRow).where(ApiTokenRow.revoked_at.is_not(None))).all() == []
    for role in sorted(allowed):
        r = client.request(method, path(sessions), json=body(), headers=bearer(tokens[role]))
        assert r.status_code == ok, (role, r.text)


def test_bad_tokens_are_401_with_a_reason(client: httpx.Client, sessions: sessionmaker[Session],
                                          tokens: dict[str, str]) -> None:
    assert "not known" in client.get("/bins", headers=bearer("lrg_nope")).json()["detail"]
    r = client.get("/bins", headers={"Authorization": f"Basic {tokens['admin']}"})
    assert r.status_code == 401
    with sessions.begin() as s:
        row = s.scalars(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(tokens["crew"]))).one()
        row.revoked_at = utcnow()
    r = client.get("/bins", headers=bearer(tokens["crew"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.get("/bins", headers=bearer(tokens["officer"])).status_code == 200


def test_tokens_are_stored_hashed_and_mark_last_use(client: httpx.Client, sessions: sessionmaker[Session],
                                                    tokens: dict[str, str]) -> None:
    token = tokens["officer"]
    assert token.startswith("lrg_") and len(token) == 4 + 43
    with sessions() as s:
        row = s.scalars(select(ApiTokenRow).where(ApiTokenRow.name == "OFFICER")).one()
        assert row.token_hash == hash_token(token) and len(row.token_hash) == 64
        assert token not in {r.token_hash for r in s.scalars(select(ApiTokenRow))}
        assert row.last_used_at is None
    before = utcnow()
    client.get("/bins", headers=bearer(token))
    with sessions() as s:
        used = s.get(ApiTokenRow, row.id)
        assert used is not None and used.last_used_at is not None
        assert before - timedelta(seconds=1) <= used.last_used_at <= utcnow()


def test_token_api_create_list_revoke(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    r = client.post("/tokens", json={"name": "Budi (Tallo)", "role": "crew"}, headers=auth("admin"))
    assert r.status_code == 201
    new = r.json()
    assert new["role"] == "crew" and new["name"] == "Budi (Tallo)" and new["token"].startswith("lrg_")
    assert client.post("/alerts/999/ack", headers=bearer(new["token"])).status_code == 404  # crew may ack
    listed = client.get("/tokens", headers=auth("admin")).json()
    assert [t["name"] for t in listed] == ["CREW", "OFFICER", "TECHNICIAN", "SUPERVISOR", "ADMIN", "Budi (Tallo)"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert client.delete(f"/tokens/{new['id']}", headers=auth("admin")).json()["revoked_at"] is not None
    assert client.get("/bins", headers=bearer(new["token"])).status_code == 401
    assert client.delete("/tokens/9999", headers=auth("admin")).status_code == 404
    bad = client.post("/tokens", json={"name": "x", "role": "root"}, headers=auth("admin"))
    assert bad.status_code == 422 and "body field 'role'" in bad.json()["detail"]


def test_token_cli(db_url: str, client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    runner = CliRunner()
    made = runner.invoke(api_cli, ["token", "create", "--role", "crew", "--name", "Budi"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[0]
    assert token.startswith("lrg_")
    assert "not shown again" in made.stderr
    assert client.get("/alerts", headers=bearer(token)).status_code == 200
    listed = runner.invoke(api_cli, ["token", "list"])
    assert listed.exit_code == 0 and "Budi" in listed.stdout and token not in listed.stdout
    token_id = next(line.split()[1] for line in listed.stdout.splitlines() if "Budi" in line)
    revoked = runner.invoke(api_cli, ["token", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/alerts", headers=bearer(token)).status_code == 401
    assert runner.invoke(api_cli, ["token", "revoke", "9999"]).exit_code == 1
    assert runner.invoke(api_cli, ["token", "create", "--role", "root", "--name", "x"]).exit_code != 0
