"""The demo's admin token survives a restart (a phone that pasted it stays logged in)."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import authenticate, kept_token, revoke_token
from lorong.storage.tables import ApiTokenRow


def test_demo_token_is_kept_across_restarts(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "var" / "demo-token"
    with sessions.begin() as s:
        first, kept = kept_token(s, path, "demo", "admin")
    assert not kept and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for _ in range(2):  # two restarts
        with sessions.begin() as s:
            again, kept = kept_token(s, path, "demo", "admin")
        assert kept and again == first
    with sessions() as s:
        assert authenticate(s, first).role.value == "admin"  # still valid: the phone stays logged in
        rows = s.scalars(select(ApiTokenRow).where(ApiTokenRow.name == "demo")).all()
        assert [r.revoked_at for r in rows] == [None]


def test_a_revoked_or_lost_demo_token_is_replaced(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "demo-token"
    with sessions.begin() as s:
        first, _ = kept_token(s, path, "demo", "admin")
        row = s.scalars(select(ApiTokenRow)).one()
        revoke_token(s, row.id)
    with sessions.begin() as s:
        second, kept = kept_token(s, path, "demo", "admin")
    assert not kept and second != first and path.read_text().strip() == second
    path.unlink()  # var/ wiped: a new token, and the old live one is revoked (one demo token at a time)
    with sessions.begin() as s:
        third, kept = kept_token(s, path, "demo", "admin")
    assert not kept and third not in (first, second)
    with sessions() as s:
        live = s.scalars(select(ApiTokenRow).where(ApiTokenRow.revoked_at.is_(None))).all()
        assert [r.name for r in live] == ["demo"]
        assert authenticate(s, third).name == "demo"
