"""A durable on-disk spool of line-protocol points between the MQTT ack and InfluxDB.

SQLite in WAL mode with ``synchronous=FULL``: once :meth:`Spool.append` returns, the points
survive a crash of the process or the machine (SQLite docs, "PRAGMA synchronous": in WAL mode
FULL syncs the WAL at every commit). Points are read back in insertion order and deleted only
after InfluxDB accepted them, so delivery into InfluxDB is at-least-once; InfluxDB overwrites a
point with the same series and timestamp, which makes repeats harmless.

One spool file belongs to one process: :class:`Spool` takes an exclusive ``flock`` on
``<file>.lock`` and raises :class:`SpoolBusy` when another process holds it (two ingesters with
the same MQTT client id would otherwise share the file and fight over the broker session). The
kernel drops the lock when the process dies, even on SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigError


class SpoolBusy(ConfigError):
    """Another process already uses this spool file."""


class Spool:
    """FIFO of line-protocol strings in one SQLite file.

    Args:
        path: the spool file (its directory is created).

    Raises:
        SpoolBusy: another process has the spool open.

    Thread-safe: one connection guarded by a lock. :meth:`depth` is kept in memory (counted
    once at open), so it costs nothing on the hot path.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {path} is in use by another process (same MQTT client id?)") from None
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)")
        self._depth = int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"spool {self.path} is closed")
        return self._db

    def append(self, lines: Sequence[str]) -> None:
        """Durably append ``lines`` in one transaction (all or none).

        Raises:
            sqlite3.Error: the disk is full or the file is unusable; nothing was appended.
        """
        if not lines:
            return
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO spool (line) VALUES (?)", [(x,) for x in lines])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth += len(lines)

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` oldest entries as ``(id, line)``, ids ascending, not removed."""
        with self._lock:
            return list(self._conn().execute("SELECT id, line FROM spool ORDER BY id LIMIT ?", (limit,)))

    def remove_through(self, last_id: int) -> int:
        """Delete every entry with id <= ``last_id`` (after InfluxDB accepted them).

        Returns:
            the number of entries deleted.
        """
        with self._lock:
            n = self._conn().execute("DELETE FROM spool WHERE id <= ?", (last_id,)).rowcount
            self._depth -= n
            return n

    def remove(self, ids: Sequence[int]) -> int:
        """Delete the entries with these ids; returns how many existed."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            n = 0
            try:
                for i in ids:
                    n += db.execute("DELETE FROM spool WHERE id = ?", (i,)).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth -= n
            return n

    def depth(self) -> int:
        """Number of points waiting."""
        return self._depth

    def close(self) -> None:
        """Close the file and release the process lock (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
