"""A local time-series store: SQLite in ``$HYBRIDNB_HOME/metrics.db``, with retention.

Why SQLite rather than in-memory ring buffers: the collector runs in a notebook kernel
while ``hybridnb monitor`` (another process) reads the same data; samples survive a
kernel restart; and the state store already proves the pattern (WAL, one short
``BEGIN IMMEDIATE`` per write). Each scrape round is one transaction (one
``executemany``) on a connection kept open; a series' labels are stored once (``series``
table) and samples refer to it by id, so a sample row is three numbers.

New samples go to a small *head* table indexed by time only, so a round appends to the
end of its pages. Every minute the writer compacts the head into *chunks*: one row per
series holding that minute's times and values as two float64 arrays (``chunks`` table,
indexed by series). Why not one index by series and time over every sample: each
round then touches one index page per series, scattered — with 1,000 series a round
rewrote about 1,000 pages and cost 5× more after ten minutes than at the start — and a
query fetched every sample as a Python tuple (1.8 million for 500 series over an hour
at 1 s, 1.5 s). A chunk is one row for 60 samples. Retention
deletes old rows at most every 30 s, and with them every series that has no row left
(targets come and go: a Dask worker's series would otherwise stay forever). A query
reads all the series of a name in a fixed number of SQL statements, however many
series match, and splits the rows with numpy. When a target goes away or fails, the collector
marks its series *stale* as Prometheus does (``stale`` table; :meth:`select` returns
NaN there), so a stopped replica's last value does not linger for the 5 minute
lookback.

>>> import tempfile, os
>>> s = SampleStore(os.path.join(tempfile.mkdtemp(), "m.db"), retention="1h")
>>> s.append([("up", {"job": "x"}, 1.0)], ts=100.0)
1
>>> [(name, labels, ts.tolist(), v.tolist()) for name, labels, ts, v in s.select("up")]
[('up', {'job': 'x'}, [100.0], [1.0])]
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..state import state_home

if TYPE_CHECKING:
    import numpy as np

Labels = dict[str, str]
Sample = tuple[str, Labels, float]
#: A series: its name and its labels as ``(name, value)`` pairs sorted by name.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL
);
DROP INDEX IF EXISTS samples_series_ts;
CREATE INDEX IF NOT EXISTS samples_ts ON samples(ts);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL,
    t0 REAL NOT NULL,
    t1 REAL NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series_t1 ON chunks(series_id, t1);
CREATE INDEX IF NOT EXISTS chunks_t1 ON chunks(t1);
CREATE TABLE IF NOT EXISTS stale (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stale_series_ts ON stale(series_id, ts);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Counts the pruning rounds that deleted series. A writer caches series ids; when another
# writer of the same file pruned series (whose ids SQLite may hand out again), the
# generation it reads at the start of its next transaction differs and it drops its cache.
_GENERATION = "series_generation"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a Prometheus duration (``"90s"``, ``"15m"``, ``"1h30m"``) or a number.

    >>> parse_duration("1h30m"), parse_duration("250ms"), parse_duration(5)
    (5400.0, 0.25, 5.0)
    """
    import re

    if isinstance(text, (int, float)):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise UsageError(f"invalid duration {text!r}: use e.g. 30s, 15m, 1h")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def default_path() -> Path:
    """``$HYBRIDNB_HOME/metrics.db``."""
    return state_home() / "metrics.db"


class SampleStore:
    """Samples of many series in one SQLite file; safe for a writer and many readers.

    Parameters
    ----------
    path:
        The database file; ``None`` means :func:`default_path`.
    retention:
        Samples older than this are deleted (a duration, ``"1h"``).
    """

    PRUNE_EVERY = 30.0
    #: Seconds (of sample time) between compactions of the head into chunks.
    COMPACT_EVERY = 60.0

    def __init__(self, path: str | Path | None = None, retention: str | float = "1h"):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = parse_duration(retention)
        self._ids: dict[SeriesKey, int] = {}
        self._wconn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_prune = 0.0
        self._last_compact = float("-inf")
        self._generation: int | None = None
        with self._connect() as conn:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SampleStore({str(self.path)!r}, retention={self.retention:g}s)"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    def _writer(self) -> sqlite3.Connection:
        # One connection for all writes, kept open: opening one per round cost more than
        # the inserts, and closing the last connection of a WAL database checkpoints it.
        if self._wconn is None:
            self._wconn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                          check_same_thread=False)
            self._wconn.execute("PRAGMA synchronous=NORMAL")
        return self._wconn

    def close(self) -> None:
        """Close the write connection (the next write opens it again)."""
        with self._lock:
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None

    def append(self, samples: Iterable[Sample], ts: float | None = None) -> int:
        """Store ``(name, labels, value)`` samples taken at ``ts`` in one transaction."""
        return self.append_keyed((((name, tuple(sorted(labels.items()))), value)
                                  for name, labels, value in samples), ts)

    def append_keyed(self, samples: Iterable[tuple[SeriesKey, float]],
                     ts: float | None = None, *,
                     timed: Iterable[tuple[SeriesKey, float, float]] = (),
                     stale: Iterable[SeriesKey] = (),
                     then: Callable[[sqlite3.Connection], None] | None = None) -> int:
        """Like :meth:`append`, with each series given as ``(name, sorted label pairs)``.

        The collector's parsers produce those keys once per series, so a round costs a
        dictionary lookup per sample, not a sort. In the same transaction: ``timed``
        samples ``(key, time, value)`` at their own times, ``stale`` series marked
        stale at ``ts``, and ``then(conn)`` (see :meth:`append_at`).
        """
        ts = time.time() if ts is None else ts
        with self._lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key=?",
                                   (_GENERATION,)).fetchone()
                if (row[0] if row else 0) != self._generation:
                    self._ids.clear()  # another writer pruned series: ids may be reused
                    self._generation = row[0] if row else 0
                ids = self._ids

                def sid(key: SeriesKey) -> int:
                    return ids.get(key) or self._series_id(conn, key)

                rows = [(sid(key), ts, value) for key, value in samples]
                rows += [(sid(key), at, value) for key, at, value in timed]
                conn.executemany("INSERT INTO samples VALUES (?,?,?)", rows)
                conn.executemany("INSERT INTO stale VALUES (?,?)",
                                 [(sid(key), ts) for key in stale])
                if ts - self._last_prune > self.PRUNE_EVERY:
                    self._prune(conn, ts - self.retention)
                    self._last_prune = ts
                if ts - self._last_compact > self.COMPACT_EVERY:
                    self._compact(conn)
                    self._last_compact = ts
                if then is not None:
                    then(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                self._ids.clear()  # ids of series made in this transaction are gone
                self._generation = None  # and a pruning in it did not happen
                raise
            conn.execute("COMMIT")
        return len(rows)

    def _prune(self, conn: sqlite3.Connection, before: float) -> None:
        """Delete rows older than ``before``, then the series left without any row."""
        for table in ("samples", "stale"):
            conn.execute(f"DELETE FROM {table} WHERE ts < ?", (before,))
        conn.execute("DELETE FROM chunks WHERE t1 < ?", (before,))  # older parts: at read
        gone = {r[0] for r in conn.execute(
            "DELETE FROM series WHERE id NOT IN (SELECT series_id FROM samples) AND id NOT "
            "IN (SELECT series_id FROM stale) AND id NOT IN (SELECT series_id FROM chunks) "
            "RETURNING id")}
        if gone:
            conn.execute("INSERT INTO meta VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET "
                         "value = value + 1", (_GENERATION,))
            self._generation = (self._generation or 0) + 1
            for key in [k for k, v in self._ids.items() if v in gone]:
                del self._ids[key]

    def _compact(self, conn: sqlite3.Connection) -> None:
        """Move every head row into chunks: one row per series, its times and values."""
        import numpy as np

        rows = conn.execute("SELECT series_id, ts, value FROM samples").fetchall()
        if not rows:
            return
        arr = np.array(rows, dtype=float)  # NULL (a NaN sample) becomes NaN again
        arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
        sids, starts = np.unique(arr[:, 0], return_index=True)
        ends = [*starts[1:].tolist(), len(arr)]
        conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?)", [
            (int(sid), float(arr[a, 1]), float(arr[b - 1, 1]),
             arr[a:b, 1].astype("<f8").tobytes(), arr[a:b, 2].astype("<f8").tobytes())
            for sid, a, b in zip(sids.tolist(), starts.tolist(), ends, strict=True)])
        conn.execute("DELETE FROM samples")

    def append_at(self, samples: Iterable[tuple[SeriesKey, float, float]],
                  then: Callable[[sqlite3.Connection], None] | None = None) -> int:
        """Store ``(series key, time, value)`` samples, each at its own time, in one
        transaction: history read after the fact (a training run's logged steps, what an
        edge site buffered: :mod:`hybridnb.monitor.edge`). ``then(conn)`` runs inside the
        same transaction: a caller's own bookkeeping (how far it has ingested, in a table
        of its own) commits with the samples or not at all.

        >>> import tempfile, os
        >>> s = SampleStore(os.path.join(tempfile.mkdtemp(), "m.db"))
        >>> s.append_at([(("loss", (("run", "a"),)), 10.0, 2.0),
        ...              (("loss", (("run", "a"),)), 20.0, 1.0)])
        2
        >>> s.latest("loss", {"run": "a"})
        20.0
        """
        rows = list(samples)
        if not rows and then is None:
            return 0
        # ``ts`` only decides pruning: the newest time keeps the recent history.
        return self.append_keyed((), max((at for _, at, _ in rows), default=None),
                                 timed=rows, then=then)

    def mark_stale(self, keys: Iterable[tuple[str, Labels]], ts: float | None = None) -> None:
        """Mark series stale at ``ts``: instant queries see nothing there until the
        series has a new sample (Prometheus' staleness markers)."""
        self.append_keyed((), ts, stale=[(name, tuple(sorted(labels.items())))
                                         for name, labels in keys])

    def latest(self, name: str, labels: Labels) -> float | None:
        """Time of the newest sample of one series (exact labels), or ``None``."""
        text = json.dumps(dict(sorted(labels.items())), sort_keys=True, separators=(",", ":"))
        with self._connect() as conn:
            # Aggregate max(), which skips NULL (the two-argument max() would return it).
            ids = "SELECT id FROM series WHERE name=? AND labels=?"
            row = conn.execute(
                f"SELECT max(t) FROM (SELECT max(ts) AS t FROM samples WHERE series_id IN "
                f"({ids}) UNION ALL SELECT max(t1) FROM chunks WHERE series_id IN ({ids}))",
                (name, text, name, text)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _series_id(self, conn: sqlite3.Connection, key: SeriesKey) -> int:
        name, labels = key
        row = (name, json.dumps(dict(labels), sort_keys=True, separators=(",", ":")))
        conn.execute("INSERT OR IGNORE INTO series (name, labels) VALUES (?,?)", row)
        sid = int(conn.execute("SELECT id FROM series WHERE name=? AND labels=?",
                               row).fetchone()[0])
        self._ids[key] = sid
        return sid

    def names(self) -> list[str]:
        """Metric names with at least one series."""
        with self._connect() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT name FROM series ORDER BY 1")]

    def select(self, name: str, start: float | None = None, end: float | None = None
               ) -> list[tuple[str, Labels, np.ndarray, np.ndarray]]:
        """Every series called ``name`` with its samples in ``[start, end]``.

        Returns ``(name, labels, times, values)`` with numpy arrays sorted by time;
        a value is NaN where the series was marked stale.
        """
        import numpy as np

        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        # Four statements for any number of series (one per series cost a round trip
        # each): the series, their chunks, their head rows, their staleness markers.
        ids = "SELECT id FROM series WHERE name=?"
        with self._connect() as conn:
            series = conn.execute("SELECT id, labels FROM series WHERE name=? ORDER BY id",
                                  (name,)).fetchall()
            if not series:
                return []
            # In the index's order (by series, then end time): no sort in SQLite.
            chunks = conn.execute(f"SELECT series_id, ts, value FROM chunks WHERE series_id "
                                  f"IN ({ids}) AND t1 >= ? AND t0 <= ? ORDER BY series_id, "
                                  f"t1", (name, lo, hi)).fetchall()
            head = conn.execute(f"SELECT series_id, ts, value FROM samples WHERE series_id "
                                f"IN ({ids}) AND ts BETWEEN ? AND ?", (name, lo, hi)).fetchall()
            head += conn.execute(f"SELECT series_id, ts, NULL FROM stale WHERE series_id IN "
                                 f"({ids}) AND ts BETWEEN ? AND ?", (name, lo, hi)).fetchall()
        # A series' chunks are joined as bytes, then read as one array each.
        blobs: dict[int, tuple[list[bytes], list[bytes]]] = {}
        for sid, ts_blob, value_blob in chunks:
            pair = blobs.get(sid)
            if pair is None:
                pair = blobs[sid] = ([], [])
            pair[0].append(ts_blob)
            pair[1].append(value_blob)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {
            sid: [(np.frombuffer(b"".join(t), "<f8"), np.frombuffer(b"".join(v), "<f8"))]
            for sid, (t, v) in blobs.items()}
        if head:
            arr = np.array(head, dtype=float)  # NULL (stale) becomes NaN
            arr = arr[np.argsort(arr[:, 0], kind="stable")]  # samples before markers
            sids, starts = np.unique(arr[:, 0], return_index=True)
            for sid, a, b in zip(sids.astype(int).tolist(), starts.tolist(),
                                 [*starts[1:].tolist(), len(arr)], strict=True):
                parts.setdefault(sid, []).append((arr[a:b, 1], arr[a:b, 2]))
        out = []
        for sid, labels in series:
            if sid not in parts:
                continue
            pieces = parts[sid]
            ts = np.concatenate([t for t, _ in pieces]) if len(pieces) > 1 else pieces[0][0]
            values = (np.concatenate([v for _, v in pieces]) if len(pieces) > 1
                      else pieces[0][1])
            if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():  # history stored late
                order = np.argsort(ts, kind="stable")
                ts, values = ts[order], values[order]
            keep = (ts >= lo) & (ts <= hi)  # chunks overlap the window's edges
            if keep.any():  # (a copy: frombuffer's arrays are read-only)
                out.append((name, json.loads(labels), ts[keep], values[keep]))
        return out

    def series_count(self) -> int:
        """How many series the store holds (retention prunes those with no sample left).

        >>> import tempfile, os
        >>> SampleStore(os.path.join(tempfile.mkdtemp(), "m.db")).series_count()
        0
        """
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM series").fetchone()[0])

    def latest_time(self) -> float | None:
        """Time of the newest sample, or ``None`` when empty."""
        with self._connect() as conn:
            row = conn.execute("SELECT max(t) FROM (SELECT max(ts) AS t FROM samples "
                               "UNION ALL SELECT max(t1) FROM chunks)").fetchone()
        return None if row[0] is None else float(row[0])
