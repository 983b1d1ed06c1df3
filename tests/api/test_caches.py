"""The page cache and the token cache: what is reused, for how long, and what drops it."""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.bin_state import BinLoader
from api.pages import PageCache
from lorong.core.model import utcnow
from lorong.storage.tables import ApiTokenRow, DeviceLatestRow, DeviceRow
from tests.api.conftest import serve
from tests.api.seed import fleet

pytestmark = pytest.mark.integration


def test_page_cache_reuses_until_expiry_or_new_source() -> None:
    cache = PageCache(ttl_s=0.2)
    calls: list[int] = []
    source = [1]

    def render() -> tuple[bytes, dict[str, str]]:
        calls.append(1)
        return b'[{"n": %d}]' % len(calls) + b" " * 2000, {"X-Next-Cursor": "c"}

    first = cache.respond("k", source, "", render)
    assert first.body.startswith(b'[{"n": 1}]') and first.headers["x-next-cursor"] == "c"
    assert cache.respond("k", source, "", render).body.startswith(b'[{"n": 1}]')
    zipped = cache.respond("k", source, "gzip, br", render)
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.body).startswith(b'[{"n": 1}]')
    assert cache.respond("k", [1], "", render).body.startswith(b'[{"n": 2}]')  # another snapshot object
    other = [2]
    assert cache.respond("other", other, "", render).body.startswith(b'[{"n": 3}]')
    time.sleep(0.25)
    assert cache.respond("other", other, "", render).body.startswith(b'[{"n": 4}]')  # expired
    off = PageCache(ttl_s=0)
    off.respond("k", source, "", render)
    off.respond("k", source, "", render)
    assert len(calls) == 6
    small = PageCache(ttl_s=1).respond("s", source, "gzip", lambda: (b"[]", {}))
    assert "content-encoding" not in small.headers  # under 1 KiB: not worth compressing


def test_no_token_cache_in_the_api(settings: Any, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url) as c:
            crew = {"Authorization": f"Bearer {tokens['crew']}"}
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            assert c.get("/alerts", headers=crew).status_code == 200
            with sessions.begin() as s:  # revoked elsewhere (the CLI, another API process): refused at once
                s.execute(update(ApiTokenRow).where(ApiTokenRow.name == "CREW").values(revoked_at=utcnow()))
            assert c.get("/alerts", headers=crew).status_code == 401
            officer_id = next(t["id"] for t in c.get("/tokens", headers=admin).json() if t["name"] == "OFFICER")
            officer = {"Authorization": f"Bearer {tokens['officer']}"}
            assert c.get("/alerts", headers=officer).status_code == 200
            assert c.delete(f"/tokens/{officer_id}", headers=admin).status_code == 200  # through the API: at once
            assert c.get("/alerts", headers=officer).status_code == 401
    finally:
        srv.stop()


def test_bin_loader_sees_changes_made_elsewhere(sessions: sessionmaker[Session]) -> None:
    fleet(sessions, utcnow())
    load = BinLoader(sessions, 0.8)
    first = {e.id: e for e in load(lambda: None)}
    again = {e.id: e for e in load(lambda: None)}
    assert all(again[i] is first[i] for i in first)  # nothing changed: nothing parsed again
    with sessions.begin() as s:
        row = s.get(DeviceLatestRow, "MKS-BIN-0002")
        assert row is not None
        row.derived = {**row.derived, "fill_rate_per_h": 0.5}  # derived only, same ts
        s.execute(update(DeviceRow).where(DeviceRow.id == "MKS-BIN-0003")
                  .values(street="Jl. Baru", updated_at=utcnow()))
        s.execute(update(DeviceRow).where(DeviceRow.id == "MKS-BIN-0004").values(status="retired",
                                                                                 updated_at=utcnow()))
    third = {e.id: e for e in load(lambda: None)}
    assert third["MKS-BIN-0002"].data["fillRate_per_h"] == 0.5
    assert third["MKS-BIN-0003"].data["street"] == "Jl. Baru"
    assert "MKS-BIN-0004" not in third
    assert third["MKS-BIN-0001"] is first["MKS-BIN-0001"]
    with sessions() as s:
        assert s.scalar(select(DeviceRow.status).where(DeviceRow.id == "MKS-BIN-0004")) == "retired"
