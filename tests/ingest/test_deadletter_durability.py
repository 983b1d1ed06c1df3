"""Dead letters are as durable as the spool (issue 14, item 4): a rejection is acknowledged to the
broker as soon as it is in the dead-letter table, so its commit must reach the disk
(``synchronous=FULL`` in WAL mode, SQLite docs "PRAGMA synchronous"), like a spool append."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from ingest.deadletter import DeadLetter, DeadLetterStore
from lorong.storage.spool import Spool

FULL = 2
"""``PRAGMA synchronous`` answers 2 for FULL (1 is NORMAL)."""


def test_dead_letter_commits_are_synced_like_spool_appends(sessions, tmp_path) -> None:
    store = DeadLetterStore(sessions)
    store.add_many([DeadLetter("lorong/v1/X/up", b"{", "bad_json", "Expecting value", datetime.now(UTC))])
    with sessions() as s:  # the pooled connection the store just committed on
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        dead_letters = s.execute(text("PRAGMA synchronous")).scalar()
    spool = Spool(tmp_path / "s.sqlite")
    spool_level = spool._conn().execute("PRAGMA synchronous").fetchone()[0]
    spool.close()
    assert spool_level == FULL
    assert dead_letters == spool_level
    assert store.count() == 1


def test_a_too_large_payload_is_kept_in_part(sessions) -> None:  # type: ignore[no-untyped-def]
    """A 30 MB publish, refused as too_large, was stored whole: one message grew the database by
    30 MB. Its first 64 KiB are kept (it can never be replayed: it stays over the limit); other
    dead letters keep every byte."""
    from datetime import UTC, datetime

    store = DeadLetterStore(sessions)
    big = b"{" + b"x" * 300_000
    at = datetime(2026, 12, 6, tzinfo=UTC)
    store.add_many([DeadLetter("lorong/v1/B1/up", big, "too_large", "300001 bytes > 65536", at),
                    DeadLetter("lorong/v1/B1/up", big, "bad_json", "not JSON", at)])
    rows = {r.reason: r for r in store.list(limit=10)}
    assert bytes(rows["too_large"].payload) == big[:65536] and "300001 bytes" in rows["too_large"].detail
    assert bytes(rows["bad_json"].payload) == big
