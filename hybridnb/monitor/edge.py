"""Edge sites seen from the centre: what they buffered, and whether they can be reached.

An edge site's agent (:mod:`hybridnb.serve.edge`) keeps its endpoint's counter
snapshots and request logs on disk, numbered. :class:`EdgeIngest` reads them when the
link is up and stores them in the central :class:`~hybridnb.monitor.store.SampleStore`
at the times they were taken, so the counters have no gap across an outage:

1. :meth:`~EdgeIngest.pull` the records after the last number stored;
2. :meth:`~EdgeIngest.commit` them: samples, request-log rows and the new number in
   *one* transaction; records at or below the stored number are skipped (and request
   rows are keyed by their number), so a page that arrives twice counts once;
3. :meth:`~EdgeIngest.ack` the number, after which the agent deletes them.

A lost acknowledgement costs a resend, never a double count; a crash between 2 and 3
likewise. A site is ``up`` (its agent answers and a version serves), ``down`` (the agent
answers, nothing serves) or ``unreachable`` (no answer: the link is down, the site may
well be serving locally), with the time since the last contact. The collector records
``up{job="hybridnb-edge"}`` (0 when unreachable) and
``hybridnb_edge_last_contact_timestamp_seconds``; the shipped rule
``EdgeSiteUnreachable`` (:func:`hybridnb.monitor.alerts.default_rules`) alerts on it.

>>> from hybridnb.monitor import Collector                      # doctest: +SKIP
>>> c = Collector(discover=False)                               # doctest: +SKIP
>>> for source in EdgeIngest.from_config(c.store):             # doctest: +SKIP
...     c.add_source(source)
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import OperationError
from ..serve.edge.client import EdgeClient, Unreachable
from .store import SampleStore, SeriesKey

if TYPE_CHECKING:
    import pandas as pd

    from ..config import HybridConfig
    from ..serve.edge.wire import AgentStatus, RecordsPage

logger = logging.getLogger(__name__)

#: The job of edge sites' series in the central store.
EDGE_JOB = "hybridnb-edge"
#: Families an edge site may forward (hostile input is bounded: nothing else is stored).
FORWARDED_PREFIXES = ("hybridnb_endpoint_", "hybridnb_edge_")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_cursor (
    site TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    last_contact REAL
);
CREATE TABLE IF NOT EXISTS edge_requests (
    site TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    route TEXT,
    code INTEGER,
    seconds REAL,
    version TEXT,
    PRIMARY KEY (site, epoch, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edge_requests_ts ON edge_requests(site, ts);
"""


class EdgeState(str, Enum):
    """How an edge site looks from the centre."""

    up = "up"
    down = "down"
    unreachable = "unreachable"


@dataclass
class EdgeSiteStatus:
    """The last word from one edge site."""

    site: str
    state: EdgeState
    checked_at: float
    last_contact: float | None
    ready: bool = False
    version: str | None = None
    backlog: int = 0
    dropped: int = 0
    error: str | None = None

    @property
    def since_contact_s(self) -> float | None:
        """Seconds between the last contact and the last check (``None``: never)."""
        return None if self.last_contact is None else max(0.0, self.checked_at
                                                           - self.last_contact)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "state": self.state.value, "checked_at": self.checked_at,
                "last_contact": self.last_contact, "since_contact_s": self.since_contact_s,
                "ready": self.ready, "version": self.version, "backlog": self.backlog,
                "dropped": self.dropped, "error": self.error}

    def __repr__(self) -> str:
        since = self.since_contact_s
        ago = "never contacted" if since is None else f"last contact {since:.0f} s ago"
        return f"EdgeSiteStatus({self.site!r}, {self.state.value}, {ago})"

    def _repr_html_(self) -> str:
        color = {"up": "#2e7d32", "down": "#c62828", "unreachable": "#ef6c00"}
        since = self.since_contact_s
        return (f"<p><b>{escape(self.site)}</b>: <span style='color:"
                f"{color[self.state.value]}'>{self.state.value}</span>, "
                f"{'never contacted' if since is None else f'last contact {since:.0f} s ago'}"
                f", version {escape(self.version or '—')}, {self.backlog} buffered, "
                f"{self.dropped} dropped{', ' + escape(self.error) if self.error else ''}</p>")


class EdgeIngest:
    """Reads one edge site's buffer into the central store; a collector source.

    Parameters
    ----------
    site:
        The edge site's name (label ``site`` of its series).
    client:
        Its agent's :class:`~hybridnb.serve.edge.client.EdgeClient`.
    store:
        The central sample store; its file also holds where each site's ingestion is.
    interval:
        Seconds between two contacts (the link is thin: not every collector round).
    page:
        Records per request.
    budget_s:
        Seconds one contact may spend reading a backlog; the rest waits for the next.
    """

    def __init__(self, site: str, client: EdgeClient, store: SampleStore, *,
                 interval: float = 5.0, page: int = 5000, budget_s: float = 5.0):
        self.site = site
        self.client = client
        self.store = store
        self.interval = float(interval)
        self.page = int(page)
        self.budget_s = float(budget_s)
        self.instance = urllib.parse.urlsplit(client.url).netloc
        self._labels = (("instance", self.instance), ("job", EDGE_JOB), ("site", site))
        self._lock = threading.Lock()
        self._next = 0.0
        self._status: EdgeSiteStatus | None = None
        with _connect(store) as conn:
            conn.executescript(_SCHEMA)
        self.malformed = 0

    @classmethod
    def from_config(cls, store: SampleStore, config: HybridConfig | None = None, *,
                    sites: list[str] | None = None, interval: float | None = None,
                    timeout: float = 2.0) -> list[EdgeIngest]:
        """One source per edge site whose ``edge.agent`` is configured (or per ``sites``,
        each of which must be one)."""
        from ..config import load_config
        from ..errors import UsageError

        config = config or load_config()
        chosen = [config.site(name) for name in sites] if sites is not None else [
            s for s in config.sites.values() if s.edge is not None and s.edge.agent]
        out = []
        for site in chosen:
            if site.edge is None or site.edge.agent is None:
                raise UsageError(f"site {site.name!r} has no edge agent: add 'edge: {{agent: "
                                 f"{{address: HOST, cert: PEM}}}}' under sites.{site.name}")
            interval_s = interval if interval is not None else min(
                5.0, site.edge.buffer.sample_interval_s)
            out.append(cls(site.name, EdgeClient.for_site(site, timeout=timeout), store,
                           interval=interval_s))
        return out

    def __repr__(self) -> str:
        return f"EdgeIngest({self.site!r}, {self.client.url}, {self.status()!r})"

    # -- the three steps -------------------------------------------------------------

    def cursor(self) -> tuple[str | None, int, float | None]:
        """``(epoch, last stored number, last contact)`` of this site."""
        with _connect(self.store) as conn:
            row = conn.execute("SELECT epoch, seq, last_contact FROM edge_cursor WHERE site=?",
                               (self.site,)).fetchone()
        return (None, 0, None) if row is None else (str(row[0]), int(row[1]), row[2])

    def pull(self, limit: int | None = None) -> RecordsPage:
        """The next page of records after the stored number (raises ``Unreachable``)."""
        epoch, seq, _ = self.cursor()
        return self.client.records(seq, epoch=epoch, limit=limit or self.page)

    def commit(self, page: RecordsPage, *, contact: float | None = None) -> int:
        """Store a page's new records and the new number atomically; return how many new.

        Records at or below the stored number of the same epoch are skipped.
        """
        contact = time.time() if contact is None else contact
        with self._lock:
            epoch, seq, _ = self.cursor()
            after = seq if epoch == page.epoch else 0
            fresh = [r for r in page.records if r[0] > after]
            samples: list[tuple[SeriesKey, float, float]] = []
            requests: list[tuple[Any, ...]] = []
            for number, ts, kind, body in fresh:
                if kind == "metrics":
                    samples += self._samples(ts, body)
                elif kind == "request":
                    requests.append((self.site, page.epoch, number, ts, str(body.get("r")),
                                     _int(body.get("c")), _float(body.get("d")),
                                     None if body.get("v") is None else str(body.get("v"))))
                else:
                    self.malformed += 1
            last = max([after, *(r[0] for r in fresh)])

            def bookkeeping(conn: sqlite3.Connection) -> None:
                conn.executemany("INSERT OR IGNORE INTO edge_requests VALUES (?,?,?,?,?,?,?,?)",
                                 requests)
                conn.execute("INSERT OR REPLACE INTO edge_cursor VALUES (?,?,?,?)",
                             (self.site, page.epoch, last, contact))
                if requests:  # the request log follows the store's retention
                    conn.execute("DELETE FROM edge_requests WHERE site=? AND ts < ?",
                                 (self.site, contact - self.store.retention))

            self.store.append_at(samples, then=bookkeeping)
        return len(fresh)

    def ack(self, page: RecordsPage) -> int:
        """Tell the agent everything up to the page's last record is stored."""
        return self.client.ack(page.epoch, page.last)

    def _samples(self, ts: float, body: dict[str, Any]) -> list[tuple[SeriesKey, float, float]]:
        out = []
        for item in body.get("s", []) if isinstance(body, dict) else []:
            try:
                name, labels, value = item
                if not (isinstance(name, str) and _NAME.match(name)
                        and name.startswith(FORWARDED_PREFIXES)):
                    raise ValueError(name)
                pairs = {str(k): str(v) for k, v in dict(labels).items()
                         if k not in ("job", "instance", "site")}
                key = (name, tuple(sorted({**pairs, **dict(self._labels)}.items())))
                out.append((key, float(ts), float(value)))
            except (TypeError, ValueError):
                self.malformed += 1
        return out

    # -- a collector source ----------------------------------------------------------

    def collect(self, now: float | None = None) -> tuple[dict[str, Any],
                                                         list[tuple[SeriesKey, float]]]:
        """Contact the site if its interval is due; ``(health, samples at now)``.

        Health is what :meth:`hybridnb.monitor.Collector.health` lists (with ``state``
        and ``since_contact_seconds``); the samples are ``up`` and the last contact time.
        """
        now = time.time() if now is None else now
        if self._status is None or time.monotonic() >= self._next:
            self._next = time.monotonic() + self.interval
            self._status = self.check(now)
        st = self._status
        health = {"job": EDGE_JOB, "instance": self.instance, "name": self.site,
                  "up": st.state is EdgeState.up, "state": st.state.value,
                  "error": st.error, "last_scrape": now, "duration_seconds": 0.0,
                  "last_contact": st.last_contact,
                  "since_contact_seconds": None if st.last_contact is None
                  else max(0.0, now - st.last_contact)}
        samples: list[tuple[SeriesKey, float]] = [
            (("up", self._labels), 0.0 if st.state is EdgeState.unreachable else 1.0),
            (("hybridnb_edge_endpoint_ready", self._labels), float(st.ready))]
        if st.last_contact is not None:
            samples.append((("hybridnb_edge_last_contact_timestamp_seconds", self._labels),
                            st.last_contact))
        return health, samples

    def probe(self, now: float | None = None) -> EdgeSiteStatus:
        """Ask the agent how it is, and nothing else (its buffer stays where it is)."""
        status = self._probe(time.time() if now is None else now)
        return status if isinstance(status, EdgeSiteStatus) else _status_of(
            self.site, status, time.time() if now is None else now, time.time())

    def _probe(self, now: float) -> EdgeSiteStatus | AgentStatus:
        _, _, last = self.cursor()
        try:
            return self.client.status()
        except Unreachable as exc:
            return EdgeSiteStatus(self.site, EdgeState.unreachable, now, last, error=str(exc))
        except OperationError as exc:  # it answered, with an error (a wrong token...)
            return EdgeSiteStatus(self.site, EdgeState.down, now, time.time(), error=str(exc))

    def check(self, now: float | None = None) -> EdgeSiteStatus:
        """Contact the agent now: its status, then its backlog (within ``budget_s``)."""
        now = time.time() if now is None else now
        status = self._probe(now)
        if isinstance(status, EdgeSiteStatus):
            return status
        contact = time.time()
        error = None
        deadline = time.monotonic() + self.budget_s
        try:
            while True:
                page = self.pull()
                if page.records:
                    self.commit(page, contact=contact)
                else:
                    self._touch(page.epoch, contact)
                if page.last:  # everything up to the stored number, also what a lost
                    self.ack(page)  # ack of an earlier contact left behind
                if not page.more or time.monotonic() > deadline:
                    break
        except OperationError as exc:  # the link dropped mid-way: the rest waits
            error = str(exc)
        result = _status_of(self.site, status, now, contact)
        result.error = error
        return result

    def _touch(self, epoch: str, contact: float) -> None:
        with self._lock, _connect(self.store) as conn:
            conn.execute("INSERT INTO edge_cursor VALUES (?,?,0,?) ON CONFLICT(site) DO "
                         "UPDATE SET last_contact=excluded.last_contact", (self.site, epoch,
                                                                           contact))

    def status(self) -> EdgeSiteStatus | None:
        """The last check's result (``None`` before the first)."""
        return self._status

    # -- what was forwarded ----------------------------------------------------------

    def request_count(self) -> int:
        """Request-log rows stored for this site (within retention)."""
        with _connect(self.store) as conn:
            return int(conn.execute("SELECT count(*) FROM edge_requests WHERE site=?",
                                    (self.site,)).fetchone()[0])

    def request_log(self, start: float | None = None, end: float | None = None
                    ) -> pd.DataFrame:
        """The site's forwarded request log: time, route, code, seconds, version."""
        import pandas as pd

        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        with _connect(self.store) as conn:
            rows = conn.execute("SELECT ts, route, code, seconds, version FROM edge_requests "
                                "WHERE site=? AND ts BETWEEN ? AND ? ORDER BY ts",
                                (self.site, lo, hi)).fetchall()
        frame = pd.DataFrame(rows, columns=["time", "route", "code", "seconds", "version"])
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame

    def close(self) -> None:
        self.client.close()


def _status_of(site: str, status: AgentStatus, now: float, contact: float) -> EdgeSiteStatus:
    return EdgeSiteStatus(site, EdgeState.up if status.ready else EdgeState.down, now, contact,
                          ready=status.ready, version=status.active_version,
                          backlog=int(status.buffer.get("records", 0)),
                          dropped=int(status.buffer.get("dropped", 0)))


def edge_status(config: HybridConfig | None = None, store: SampleStore | None = None, *,
                sites: list[str] | None = None, timeout: float = 2.0) -> list[EdgeSiteStatus]:
    """How every configured edge site (or ``sites``) looks from here, now.

    Read-only: each agent is asked for its status; nothing is pulled or acknowledged.
    The last contact of an unreachable site is what the collector last recorded in
    ``store`` (default ``$HYBRIDNB_HOME/metrics.db``).
    """
    store = store or SampleStore()
    out = []
    for source in EdgeIngest.from_config(store, config, sites=sites, timeout=timeout):
        try:
            out.append(source.probe())
        finally:
            source.close()
    return out


@contextmanager
def _connect(store: SampleStore) -> Iterator[sqlite3.Connection]:
    """A connection to the store's file, committed and closed at the end of the block."""
    conn = sqlite3.connect(store.path, timeout=30.0)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
