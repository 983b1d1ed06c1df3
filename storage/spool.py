"""A durable on-disk spool of line-protocol points between the MQTT ack and InfluxDB.

SQLite in WAL mode with ``synchronous=FULL``: once :meth:`Spool.append` returns, the points
survive a crash of the process or the machine (SQLite docs, "PRAGMA synchronous"). Points are
read back in insertion order and deleted only after InfluxDB accepted them, so delivery into
InfluxDB is at-least-once; InfluxDB overwrites a point with the same series and timestamp,
which makes repeats harmless.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path


class Spool:
    """FIFO of line-protocol strings in one SQLite file.

    Args:
        path: the spool file (its directory is created).

    Thread-safe: one connection guarded by a lock.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)")

    def append(self, lines: Sequence[str]) -> None:
        """Durably append ``lines`` in one transaction."""
        if not lines:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO spool (line) VALUES (?)", ((x,) for x in lines))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` oldest entries as ``(id, line)``, not removed."""
        with self._lock:
            return list(self._db.execute("SELECT id, line FROM spool ORDER BY id LIMIT ?", (limit,)))

    def remove_through(self, last_id: int) -> None:
        """Delete every entry with id <= ``last_id`` (after InfluxDB accepted them)."""
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))

    def remove(self, ids: Sequence[int]) -> None:
        """Delete the entries with these ids."""
        with self._lock:
            self._db.executemany("DELETE FROM spool WHERE id = ?", ((i,) for i in ids))

    def depth(self) -> int:
        """Number of points waiting."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
