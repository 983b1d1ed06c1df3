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

A damaged spool never opens as an empty one (its points were acknowledged to the broker, so
nothing else has them): :class:`Spool` runs SQLite's ``PRAGMA quick_check`` at open, and keeps
beside the data a count file ``<file>.count`` holding the id of the last chunk appended. SQLite's
AUTOINCREMENT counter (``sqlite_sequence``) never goes back, so a file whose counter is behind the
count file lost appends: a deleted or cut ``-wal`` file (SQLite silently drops WAL frames it
cannot verify), a main file truncated or deleted. Such a spool raises :class:`SpoolDamaged`. The
count file is written after each append's commit and not synced: it can only lag the data (a
power loss may undo its last writes, which weakens the check but never raises a false alarm).

A full disk: SQLite needs free space even to delete (in WAL mode a delete is new WAL frames), so a
spool that filled its filesystem could not remove the points InfluxDB had taken, and stayed full. The
spool keeps a reserve file ``<file>.reserve`` (:data:`RESERVE_BYTES`, zeros) made at open; when a
removal fails for lack of space it deletes the reserve and tries again, which frees room for the
deletes and for new points; the reserve is made again once the filesystem has room for it twice.
:meth:`Spool.free_bytes` tells how much room is left (the ingester's
``lorong_ingest_spool_free_bytes``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lorong.core.errors import ConfigError
from lorong.core.model import Message, to_ms, utc_from_ms
from lorong.storage.files import private_dir, private_file

log = logging.getLogger(__name__)

RESERVE_BYTES = 4 * 1024 * 1024
"""Room kept beside the spool for deleting when its disk is full (our choice: deleting a full 1 GB
spool's chunks writes a few hundred kB of WAL; 4 MiB leaves room for new points too)."""


class SpoolBusy(ConfigError):
    """Another process already uses this spool file.

    Attributes:
        path: the spool file (named after the MQTT client id, see :func:`ingest.service.spool_path_for`).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(f"spool {path} is in use by another process (same MQTT client id?)")
        self.path = path


def ensure_free(path: Path) -> None:
    """Check, without opening the spool, that no other process holds ``path`` (its ``.lock``).

    For a command that would spend a long time before its ingester opens the spool (``lorong demo``
    loads days of history first): it fails at once instead. The lock is taken and released, so
    a process starting in between still meets :class:`SpoolBusy` when it opens the spool.

    Raises:
        SpoolBusy: another process holds the spool's lock.
    """
    lock = Path(f"{path}.lock")
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise SpoolBusy(path) from None
    finally:
        os.close(fd)


class SpoolDamaged(ConfigError):
    """The spool file cannot be trusted: not a SQLite database, fails the integrity check, or
    holds fewer appends than its count file recorded (points acknowledged to the broker are gone).

    The message is one line naming the file and what to do.

    Attributes:
        path: the spool file.
        why: what is wrong with it.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"spool {path} is damaged ({why}); refusing to start with it. Stop here: keep the files for "
            f"inspection (`sqlite3 {path} .recover` saves what is readable), then move {path}, {path}-wal, "
            f"{path}-shm and {path}.count aside and start again with an empty spool (the points it lost were "
            "already acknowledged to the broker: republish them from the devices or a capture)")
        self.path = path
        self.why = why


_SHIFT = 1 << 20
"""Entry id = chunk id x ``_SHIFT`` + position in the chunk."""

_CHUNK_LINES = 10_000
"""Most lines per chunk (a larger append makes several chunks), so a peek never splits a huge row."""


def _encode_origins(origins: Sequence[Message | None]) -> bytes:
    """JSON ``{"m": [[topic, payload as Latin-1, received_at epoch ms], ...], "i": [message index per
    line, -1 for none]}``; consecutive lines of one message (the same object) share one entry."""
    messages: list[tuple[str, str, int]] = []
    index: list[int] = []
    last: object = None
    for o in origins:
        if o is None:
            index.append(-1)
            continue
        if o is not last:
            messages.append((o.topic, o.payload.decode("latin-1"), to_ms(o.received_at)))
            last = o
        index.append(len(messages) - 1)
    return json.dumps({"m": messages, "i": index}, separators=(",", ":")).encode()


def _decode_origins(blob: bytes) -> tuple[list[Message], list[int]]:
    data = json.loads(blob)
    return [Message(t, p.encode("latin-1"), utc_from_ms(ms)) for t, p, ms in data["m"]], list(data["i"])


def _holes(text: str) -> set[int]:
    return {int(x) for x in text.split(",")} if text else set()


class Spool:
    """FIFO of line-protocol strings in one SQLite file.

    Each :meth:`append` stores its lines as one row (a *chunk*, the lines joined by ``\\n``), so
    the cost of a transaction does not grow with its line count in Python: ``executemany`` of a
    thousand rows steps SQLite a thousand times and releases and re-takes the GIL at each step,
    which a busy network thread turns into a thousand waits. Entries keep stable ids
    (chunk id x 2^20 + position); a chunk is deleted once all its entries are removed, and
    partly removed chunks record how far they are done (``first``) and single removals
    (``holes``). A spool file of the previous layout (one row per line) is converted on open.

    Args:
        path: the spool file (its directory is created).
        reserve_bytes: size of the reserve file kept for deleting on a full disk (module docstring).

    Raises:
        SpoolBusy: another process has the spool open.
        SpoolDamaged: the file is not a SQLite database, fails ``PRAGMA quick_check``, or lost
            appends its count file recorded (see the module docstring).

    Thread-safe: one connection guarded by a lock. :meth:`depth` is kept in memory (counted
    once at open), so it costs nothing on the hot path.
    """

    def __init__(self, path: Path, reserve_bytes: int = RESERVE_BYTES) -> None:
        private_dir(path.parent)
        self.path = path
        self.reserve_bytes = reserve_bytes
        self._reserve = Path(f"{path}.reserve")
        self._lock = threading.Lock()
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusy(path) from None
        self._db: sqlite3.Connection | None = None
        self._count_fd = -1
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        self._make_reserve()

    def _open(self) -> None:
        """Open the file, check it against its count file, count the waiting points.

        Raises:
            SpoolDamaged: see the class docstring.
        """
        path = self.path
        existed = path.exists() and path.stat().st_size > 0
        count_path = Path(f"{path}.count")
        had_count = count_path.exists()
        self._count_fd = os.open(count_path, os.O_RDWR | os.O_CREAT, 0o600)
        recorded = self._read_count(count_path) if had_count else 0
        if not existed and recorded:
            raise SpoolDamaged(path, f"the file is {'empty' if path.exists() else 'missing'} but {count_path.name} "
                                     f"records {recorded} appends")
        private_file(path)  # 0600; SQLite gives -wal and -shm the same mode
        try:
            self._db = db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise SpoolDamaged(path, "SQLite integrity check: " + "; ".join(map(str, problems[:3])))
            db.execute("CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "first INTEGER NOT NULL, n INTEGER NOT NULL, holes TEXT NOT NULL, lines TEXT NOT NULL, "
                       "origins BLOB)")
            if "origins" not in {row[1] for row in db.execute("PRAGMA table_info(chunks)")}:
                db.execute("ALTER TABLE chunks ADD COLUMN origins BLOB")  # a spool of the earlier release
            self._convert_v1()
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
            seq = int(row[0]) if row else 0
            if seq < recorded:
                raise SpoolDamaged(path, f"{recorded - seq} of {recorded} appends are missing: the file ends at "
                                         f"append {seq}, {count_path.name} says {recorded} (a lost or cut -wal file?)")
            self._write_count(seq)
            self._depth = int(sum(n - first - len(_holes(h)) for first, n, h in
                                  db.execute("SELECT first, n, holes FROM chunks")))
        except sqlite3.DatabaseError as exc:
            why = "not a SQLite database" if "not a database" in str(exc) else f"SQLite: {exc}"
            raise SpoolDamaged(path, why) from None

    def _read_count(self, count_path: Path) -> int:
        text = os.pread(self._count_fd, 64, 0).decode("ascii", "replace").strip()
        if not text:
            return 0
        try:
            return int(text)
        except ValueError:
            raise SpoolDamaged(self.path, f"{count_path.name} does not hold a number: {text[:40]!r}") from None

    def _write_count(self, seq: int) -> None:
        """Record ``seq`` (the last chunk id appended) in the count file: fixed width, one write."""
        os.pwrite(self._count_fd, f"{seq:020d}\n".encode(), 0)

    def _convert_v1(self) -> None:
        """Move the rows of a one-row-per-line ``spool`` table (earlier layout) into chunks."""
        db = self._conn()
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='spool'").fetchone():
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            lines = [x for (x,) in db.execute("SELECT line FROM spool ORDER BY id")]
            self._insert(db, lines)
            db.execute("DROP TABLE spool")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"spool {self.path} is closed")
        return self._db

    @staticmethod
    def _insert(db: sqlite3.Connection, lines: Sequence[str], origins: Sequence[Message | None] | None = None) -> int:
        """Insert ``lines`` (and their ``origins``, see :meth:`append`) as chunks; returns the id of
        the last chunk (0 when none)."""
        last = 0
        for at in range(0, len(lines), _CHUNK_LINES):
            part = lines[at:at + _CHUNK_LINES]
            try:
                text = "\n".join(part)
            except TypeError as exc:  # a None or a non-str among the lines
                raise sqlite3.IntegrityError(f"spool lines must be str: {exc}") from None
            if text.count("\n") != len(part) - 1:
                raise sqlite3.IntegrityError("a spool line contains a newline")
            blob = _encode_origins(origins[at:at + _CHUNK_LINES]) if origins is not None else None
            last = db.execute("INSERT INTO chunks (first, n, holes, lines, origins) VALUES (0, ?, '', ?, ?)",
                              (len(part), text, blob)).lastrowid or 0
        return last

    def append(self, lines: Sequence[str], origins: Sequence[Message | None] | None = None) -> None:
        """Durably append ``lines`` in one transaction (all or none).

        Args:
            lines: line-protocol points.
            origins: the message each line came from (same length as ``lines``; ``None`` for a line
                of no message, such as self-metrics), kept so that a point InfluxDB refuses is
                dead-lettered as the message it came from (:meth:`origins`).

        Raises:
            sqlite3.IntegrityError: a line is not a string or holds a newline; nothing was appended.
            sqlite3.Error: the disk is full or the file is unusable; nothing was appended.
            ValueError: ``origins`` is not as long as ``lines``.
        """
        if not lines:
            return
        if origins is not None and len(origins) != len(lines):
            raise ValueError(f"{len(origins)} origins for {len(lines)} lines")
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                last = self._insert(db, lines, origins)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth += len(lines)
            self._write_count(last)

    def origins(self, ids: Sequence[int]) -> dict[int, Message]:
        """The messages the entries ``ids`` came from, for those appended with one (others are left out)."""
        wanted: dict[int, list[int]] = {}
        for i in ids:
            wanted.setdefault(i // _SHIFT, []).append(i)
        out: dict[int, Message] = {}
        with self._lock:
            db = self._conn()
            for cid, entries in wanted.items():
                row = db.execute("SELECT origins FROM chunks WHERE id = ?", (cid,)).fetchone()
                if row is None or row[0] is None:
                    continue
                messages, index = _decode_origins(row[0])
                for i in entries:
                    pos = i % _SHIFT
                    if pos < len(index) and index[pos] >= 0:
                        out[i] = messages[index[pos]]
        return out

    def peek(self, limit: int, after: int = -1) -> list[tuple[int, str]]:
        """Up to ``limit`` oldest entries with an id above ``after`` as ``(id, line)``, ids ascending,
        not removed."""
        out: list[tuple[int, str]] = []
        if limit <= 0:
            return out
        with self._lock:
            cur = self._conn().execute("SELECT id, first, holes, lines FROM chunks WHERE id >= ? ORDER BY id",
                                       (max(after, 0) // _SHIFT,))
            try:
                for cid, first, holes, text in cur:
                    gone = _holes(holes)
                    base = cid * _SHIFT
                    for i, line in enumerate(text.split("\n")[first:], first):
                        if i not in gone and base + i > after:
                            out.append((base + i, line))
                    if len(out) >= limit:
                        return out[:limit]
            finally:
                cur.close()
        return out

    @contextmanager
    def _removal(self, db: sqlite3.Connection) -> Iterator[None]:
        """One removal transaction, committed on success and rolled back on any error.

        A lost removal only sends points to InfluxDB again (a rewrite of the same points), so
        removals skip the fsync (``synchronous=NORMAL``); the next append's fsync of the WAL
        makes them durable too. ``synchronous=FULL`` is restored whatever happens.
        """
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def remove_through(self, last_id: int) -> int:
        """Delete every entry with id <= ``last_id`` (after InfluxDB accepted them).

        Returns:
            the number of entries deleted.

        Raises:
            sqlite3.OperationalError: the disk is full even without the reserve (``SQLITE_FULL``):
                nothing was deleted.
        """
        n = self._with_room(lambda: self._remove_through(last_id))
        self._make_reserve()
        return n

    def _remove_through(self, last_id: int) -> int:
        cid, pos = divmod(last_id, _SHIFT)
        with self._lock:
            db = self._conn()
            n = 0
            with self._removal(db):
                for chunk, first, size, holes in list(db.execute(
                        "SELECT id, first, n, holes FROM chunks WHERE id <= ? ORDER BY id", (cid,))):
                    gone = _holes(holes)
                    end = size if chunk < cid else min(pos + 1, size)
                    n += sum(1 for i in range(first, end) if i not in gone) if gone else max(0, int(end) - first)
                    if end >= size:
                        db.execute("DELETE FROM chunks WHERE id = ?", (chunk,))
                    elif end > first:
                        db.execute("UPDATE chunks SET first = ?, holes = ? WHERE id = ?",
                                   (end, ",".join(str(i) for i in sorted(gone) if i >= end), chunk))
            self._depth -= n
            return n

    def remove(self, ids: Sequence[int]) -> int:
        """Delete the entries with these ids; returns how many existed (errors as :meth:`remove_through`)."""
        return self._with_room(lambda: self._remove(ids))

    def _remove(self, ids: Sequence[int]) -> int:
        wanted: dict[int, set[int]] = {}
        for i in ids:
            wanted.setdefault(i // _SHIFT, set()).add(i % _SHIFT)
        with self._lock:
            db = self._conn()
            n = 0
            with self._removal(db):
                for cid, positions in wanted.items():
                    row = db.execute("SELECT first, n, holes FROM chunks WHERE id = ?", (cid,)).fetchone()
                    if row is None:
                        continue
                    first, size, holes = row
                    gone = _holes(holes)
                    new = {i for i in positions if first <= i < size and i not in gone}
                    n += len(new)
                    gone |= new
                    if len(gone) >= size - first:
                        db.execute("DELETE FROM chunks WHERE id = ?", (cid,))
                    elif new:
                        db.execute("UPDATE chunks SET holes = ? WHERE id = ?",
                                   (",".join(str(i) for i in sorted(gone)), cid))
            self._depth -= n
            return n

    def depth(self) -> int:
        """Number of points waiting."""
        return self._depth

    def _make_reserve(self) -> None:
        """Write the reserve file when it is missing and the filesystem has room for it twice."""
        if self.reserve_bytes <= 0 or self._reserve.exists() or self.free_bytes() < 2 * self.reserve_bytes:
            return
        part = self._reserve.with_name(self._reserve.name + ".part")
        try:
            with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
                for _ in range(0, self.reserve_bytes, 65536):
                    fh.write(bytes(65536))
            part.replace(self._reserve)
        except OSError as exc:
            part.unlink(missing_ok=True)
            log.warning("spool %s: cannot write its %d-byte reserve: %s", self.path, self.reserve_bytes, exc)

    def _with_room(self, removal: Callable[[], int]) -> int:
        """Run a removal; when the disk is full, delete the reserve and run it once more."""
        try:
            return removal()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_FULL" or not self._reserve.exists():
                raise
            self._reserve.unlink()
            log.warning("spool %s: its disk is full (%d bytes free); released its %d-byte reserve to delete the "
                        "points InfluxDB took", self.path, self.free_bytes(), self.reserve_bytes)
            return removal()

    def free_bytes(self) -> int:
        """Bytes an unprivileged process may still write on the spool's filesystem (``statvfs``
        ``f_bavail * f_frsize``): at 0, appends fail and SQLite cannot even delete (see :meth:`remove_through`)."""
        st = os.statvfs(self.path.parent)
        return int(st.f_bavail * st.f_frsize)

    def close(self) -> None:
        """Close the file and release the process lock (idempotent)."""
        with self._lock:
            if self._lock_fd < 0:
                return
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._count_fd >= 0:
                os.close(self._count_fd)
                self._count_fd = -1
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1


def spool_in_use(path: Path) -> bool:
    """True while another open file holds the spool lock of ``path`` (a running ingester; in this
    process too, since ``flock`` locks belong to open files). False when there is no lock file."""
    try:
        fd = os.open(f"{path}.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def remove_spool(path: Path) -> None:
    """Delete a closed, empty spool's files: the count file first (a data file without it opens as
    new; the reverse would read as damage), then the data, WAL, shared-memory, reserve and lock
    files. Missing files are skipped."""
    for suffix in (".count", "", "-wal", "-shm", "-journal", ".reserve", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
