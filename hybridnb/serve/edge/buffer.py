"""What an edge site keeps while the link is down: a bounded, numbered record log on disk.

Records (a request's log line, a snapshot of the endpoint's counters) get consecutive
sequence numbers within an *epoch* (a random id made with the file: a wiped buffer
starts a new epoch, so the centre never mistakes its new numbers for old ones). The
centre reads the records after the last one it stored, stores them and their number in
one transaction, then acknowledges; only acknowledged records are deleted. A lost
acknowledgement costs a resend that the centre recognises by number: nothing is counted
twice, nothing is lost while it fits.

Bounded: after each write the file's used pages are compared with ``max_bytes`` (and
the rows with ``max_records``); past either, the oldest records are deleted and counted
in ``dropped`` (kept in the file, so the count survives restarts and reaches the
centre). Counter snapshots are cumulative, so dropping old ones costs resolution, not
totals. SQLite (WAL) rather than segment files: a torn write after a power cut is rolled
back by SQLite, and appends from the request path cost one list append (rows are
written in batches by :meth:`RecordBuffer.flush`).

>>> import tempfile, os
>>> buf = RecordBuffer(os.path.join(tempfile.mkdtemp(), "b.db"), max_bytes=1 << 20)
>>> buf.append("request", {"c": 200}, ts=1.0); buf.flush()
1
>>> page = buf.read(after=0)
>>> [r[0] for r in page.records], buf.ack(page.epoch, page.last)
([1], 1)
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from ...errors import UsageError
from .wire import RecordsPage

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Records a read returns at most (a page: bounded memory on both sides).
MAX_PAGE = 10_000


class RecordBuffer:
    """A bounded log of records in one SQLite file; thread-safe.

    Parameters
    ----------
    path:
        The database file (made with its directory).
    max_bytes:
        Pages in use, at most (the write-ahead log adds up to ``wal_bytes``).
    max_records:
        Rows kept at most; ``None``: only ``max_bytes`` bounds it.
    wal_bytes:
        The write-ahead log is checkpointed at about this size and truncated to it.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 64 << 20,
                 max_records: int | None = None, wal_bytes: int = 1 << 20):
        if max_bytes < 64 << 10:
            raise UsageError(f"max_bytes must be at least 64 KiB, got {max_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.max_records = max_records
        self.wal_bytes = int(wal_bytes)
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str, bytes]] = []
        self._warned = float("-inf")
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self.page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        # The bound is about the disk, not just the table: the write-ahead log is folded
        # back into the database at about ``wal_bytes`` and then truncated to that size.
        self._conn.execute(f"PRAGMA wal_autocheckpoint={max(1, self.wal_bytes // self.page_size)}")
        self._conn.execute(f"PRAGMA journal_size_limit={self.wal_bytes}")
        self.epoch = self._meta("epoch") or self._set_meta("epoch", secrets.token_hex(8))
        self.dropped = int(self._meta("dropped") or 0)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"RecordBuffer({str(self.path)!r}, {s['records']} records, "
                f"{s['bytes']} of {self.max_bytes} bytes, {s['dropped']} dropped)")

    # -- writing ---------------------------------------------------------------------

    def append(self, kind: str, body: dict[str, Any], ts: float | None = None) -> None:
        """Queue one record (written by the next :meth:`flush`); cheap, never blocks on I/O."""
        data = orjson.dumps(body)
        with self._lock:
            self._pending.append((time.time() if ts is None else ts, kind, data))

    def flush(self) -> int:
        """Write the queued records in one transaction, then enforce the limits.

        Returns the number written.
        """
        with self._lock:
            rows, self._pending = self._pending, []
            if rows:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT INTO records (ts, kind, body) VALUES (?,?,?)", rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                self._enforce()
            return len(rows)

    def _used_bytes(self) -> int:
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self.page_size

    def _enforce(self) -> None:
        count, low = self._conn.execute("SELECT count(*), min(seq) FROM records").fetchone()
        drop = 0
        if self.max_records is not None and count > self.max_records:
            drop = count - self.max_records
        used = self._used_bytes()
        if used > self.max_bytes and count:
            # Free a tenth more than the excess, so a full buffer does not delete on every
            # flush; rows are about the same size, so the share of rows is the share of bytes.
            share = (used - 0.9 * self.max_bytes) / used
            drop = max(drop, min(count, int(count * share) + 1))
        if drop:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM records WHERE seq < ?", (low + drop,))
            self.dropped += drop
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)",
                               (str(self.dropped),))
            self._conn.execute("COMMIT")
            # Once a minute at most: a full buffer drops on many flushes in a row.
            now = time.monotonic()
            if now - self._warned > 60.0:
                self._warned = now
                logger.warning("edge buffer full: dropped the %d oldest records (%d in "
                               "all); raise sites.X.edge.buffer.max_bytes to keep more",
                               drop, self.dropped)

    # -- reading ---------------------------------------------------------------------

    def read(self, after: int = 0, limit: int = 1000, epoch: str | None = None) -> RecordsPage:
        """Records with a number above ``after`` (all of them when ``epoch`` is another
        epoch's: the centre's number means nothing here), oldest first."""
        limit = max(1, min(int(limit), MAX_PAGE))
        if epoch is not None and epoch != self.epoch:
            after = 0
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, ts, kind, body FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                (int(after), limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        records = [(int(s), float(t), str(k), orjson.loads(b)) for s, t, k, b in rows]
        return RecordsPage(epoch=self.epoch, records=records,
                           last=records[-1][0] if records else int(after), more=more)

    def ack(self, epoch: str, through: int) -> int:
        """Delete the records of ``epoch`` numbered up to ``through``; return how many.

        An acknowledgement of another epoch deletes nothing (it is stale).
        """
        if epoch != self.epoch:
            return 0
        with self._lock:
            cur = self._conn.execute("DELETE FROM records WHERE seq <= ?", (int(through),))
            return int(cur.rowcount)

    def stats(self) -> dict[str, Any]:
        """Records, bytes in use, file bytes (database and log), dropped, oldest time."""
        with self._lock:
            count, oldest, last = self._conn.execute(
                "SELECT count(*), min(ts), max(seq) FROM records").fetchone()
            used = self._used_bytes()
        files = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"))
                    if p.exists())
        return {"records": int(count), "bytes": used, "file_bytes": files,
                "max_bytes": self.max_bytes, "dropped": self.dropped,
                "oldest": oldest, "last_seq": int(last or 0), "epoch": self.epoch,
                "pending": len(self._pending)}

    # -- lifecycle -------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> str:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        return value

    def close(self) -> None:
        """Write what is queued and close the file."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._conn.close()

    def __enter__(self) -> RecordBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
