"""A local time-series store: SQLite in ``$HYBRIDNB_HOME/metrics.db``, with retention.

Why SQLite rather than in-memory ring buffers: the collector runs in a notebook kernel
while ``hybridnb monitor`` (another process) reads the same data; samples survive a
kernel restart; and the state store already proves the pattern (WAL, one short
``BEGIN IMMEDIATE`` per write). Each scrape round is one transaction (one
``executemany``) on a connection kept open; a series' labels are stored once (``series``
table) and samples refer to it by id, so a sample row is three numbers. Retention
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
CREATE INDEX IF NOT EXISTS samples_series_ts ON samples(series_id, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples(ts);
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

    def __init__(self, path: str | Path | None = None, retention: str | float = "1h"):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = parse_duration(retention)
        self._ids: dict[SeriesKey, int] = {}
        self._wconn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_prune = 0.0
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
        gone = {r[0] for r in conn.execute(
            "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM samples WHERE "
            "samples.series_id = series.id) AND NOT EXISTS (SELECT 1 FROM stale WHERE "
            "stale.series_id = series.id) RETURNING id")}
        if gone:
            conn.execute("INSERT INTO meta VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET "
                         "value = value + 1", (_GENERATION,))
            self._generation = (self._generation or 0) + 1
            for key in [k for k, v in self._ids.items() if v in gone]:
                del self._ids[key]

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
            row = conn.execute("SELECT max(ts) FROM samples JOIN series ON series.id = "
                               "samples.series_id WHERE name=? AND labels=?",
                               (name, text)).fetchone()
        return None if row[0] is None else float(row[0])

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
        # Three statements for any number of series (one per series cost a round trip
        # each): the series, their samples, their staleness markers. The rows come in
        # no particular order; numpy sorts them by series and time.
        ids = "SELECT id FROM series WHERE name=?"
        with self._connect() as conn:
            series = conn.execute("SELECT id, labels FROM series WHERE name=? ORDER BY id",
                                  (name,)).fetchall()
            if not series:
                return []
            rows = conn.execute(f"SELECT series_id, ts, value FROM samples WHERE series_id "
                                f"IN ({ids}) AND ts BETWEEN ? AND ?", (name, lo, hi)).fetchall()
            rows += conn.execute(f"SELECT series_id, ts, NULL FROM stale WHERE series_id IN "
                                 f"({ids}) AND ts BETWEEN ? AND ?", (name, lo, hi)).fetchall()
        if not rows:
            return []
        arr = np.array(rows, dtype=float)  # NULL (stale) becomes NaN
        # Stable: at equal times a sample stays before its series' staleness marker.
        arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
        sids, starts = np.unique(arr[:, 0], return_index=True)
        bounds = dict(zip(sids.astype(int).tolist(),
                          zip(starts.tolist(), [*starts[1:].tolist(), len(arr)], strict=True),
                          strict=True))
        out = []
        for sid, labels in series:
            if sid in bounds:
                a, b = bounds[sid]
                out.append((name, json.loads(labels), arr[a:b, 1].copy(), arr[a:b, 2].copy()))
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
            row = conn.execute("SELECT max(ts) FROM samples").fetchone()
        return None if row[0] is None else float(row[0])
