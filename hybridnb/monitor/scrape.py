"""Scraping one target: an HTTP ``/metrics`` (kept-alive), or a run's metrics lines.

The collector scrapes the same targets every second, so each target keeps its own
connection (HTTP/1.1 keep-alive, where the server allows it) and its own
:class:`~hybridnb.exposition.ExpositionParser`, which parses a series' labels
only the first time it sees them. Both matter: at 20 targets a second, connecting and
parsing were most of the collector's CPU.

>>> HTTPScraper("http://127.0.0.1:9/metrics", {"job": "x"}, timeout=0.5).path
'/metrics'
"""

from __future__ import annotations

import http.client
import time
import urllib.parse

from ..exposition import ExpositionParser, SeriesKey

Labels = dict[str, str]
KeyedSample = tuple[SeriesKey, float]

_HEADERS = {"Accept": "text/plain;version=0.0.4", "User-Agent": "hybridnb-collector"}
# A kept-alive connection the server closed since the last scrape fails with one of these
# on reuse; one retry on a fresh connection tells that apart from a server that is down.
_STALE = (http.client.RemoteDisconnected, http.client.CannotSendRequest,
          http.client.BadStatusLine, ConnectionResetError, BrokenPipeError)


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    default = 443 if parts.scheme == "https" else 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return cls(parts.hostname or "127.0.0.1", parts.port or default, timeout=timeout), path


def http_get(url: str, timeout: float) -> bytes:
    """The body of one GET of ``url``; ``OSError`` on anything but HTTP 200.

    >>> http_get("http://127.0.0.1:9/", 0.5)
    Traceback (most recent call last):
    ...
    ConnectionRefusedError: [Errno 111] Connection refused
    """
    conn, path = _connection(url, timeout)
    try:
        conn.request("GET", path, headers=_HEADERS)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise OSError(f"HTTP {resp.status} from {url}")
    return body


def _keep(name: str) -> bool:
    # prometheus_client's ``*_created`` series are bookkeeping that nobody queries.
    return not name.endswith("_created")


class HTTPScraper:
    """Scrapes one ``/metrics`` URL again and again over one connection.

    Not thread-safe: the collector scrapes a target from one thread at a time.
    """

    def __init__(self, url: str, labels: Labels, timeout: float):
        self.url = url
        self.timeout = timeout
        self.parser = ExpositionParser(labels, keep=_keep)
        self._conn: http.client.HTTPConnection | None = None
        _, self.path = _connection(url, timeout)

    def scrape(self) -> list[KeyedSample]:
        """``(series key, value)`` of every sample; raises on any failure."""
        body = self._get()
        return self.parser.parse_keyed(body.decode("utf-8", "replace"))

    def _get(self) -> bytes:
        while True:
            fresh = self._conn is None
            if self._conn is None:
                self._conn, _ = _connection(self.url, self.timeout)
            try:
                self._conn.request("GET", self.path, headers=_HEADERS)
                resp = self._conn.getresponse()
                body = resp.read()
            except _STALE:
                self.close()
                if fresh:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status} from {self.url}")
            return body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


TimedSample = tuple[SeriesKey, float, float]


class RunReader:
    """Reads a training run's ``metrics.jsonl`` incrementally into ``hybridnb_train_*``.

    Every logged line becomes samples at the time it was logged (:meth:`history`), so a
    run that started before the collector — or ended before it — is plotted whole. A
    live run (``live=True``) also repeats its latest values at each scrape, as its HTTP
    exposition would, so "no new step for 10 minutes" stays visible to alert rules.
    Lines logged at or before ``since`` (already stored by an earlier collector) are
    skipped.
    """

    def __init__(self, run_dir: str, labels: Labels, *, live: bool = True,
                 since: float | None = None):
        from ..train.metrics import GAUGES, MetricsFollower

        self.follower = MetricsFollower(run_dir, keep=False)
        self.names = {field: name for name, (field, _) in GAUGES.items()}
        self.latest: dict[str, float] = {}
        self.labels = tuple(sorted(labels.items()))
        self.live = live
        self.since = since
        self._history: list[TimedSample] = []

    def _row_samples(self, row: dict[str, object], now: float) -> list[tuple[str, float]]:
        out = []
        if row.get("kind") == "step":
            for field in ("loss", "samples_per_second", "step_seconds", "lr"):
                if isinstance(row.get(field), (int, float)):
                    out.append((self.names[field], float(row[field])))  # type: ignore[arg-type]
            out.append(("hybridnb_train_step", float(row.get("step", 0))))  # type: ignore[arg-type]
            out.append(("hybridnb_train_last_step_timestamp_seconds",
                        float(row.get("time", now))))  # type: ignore[arg-type]
        accuracy = row.get("val_accuracy", row.get("test_accuracy"))
        if isinstance(accuracy, (int, float)):
            out.append((self.names["accuracy"], float(accuracy)))
        return out

    def scrape(self) -> list[KeyedSample]:
        if not self.follower.path.parent.exists():
            raise OSError(f"run directory {self.follower.path.parent} is gone")
        now = time.time()
        for row in self.follower.poll():
            at = row.get("time")
            at = float(at) if isinstance(at, (int, float)) else now
            if self.since is not None and at <= self.since:
                continue
            for name, value in self._row_samples(row, now):
                # The same reading of the lines as the run's own exposition.
                self.latest[name] = value
                self._history.append(((name, self.labels), at, value))
        if not self.live:
            return []
        return [((name, self.labels), value) for name, value in self.latest.items()]

    def history(self) -> list[TimedSample]:
        """The samples of the lines read by the last scrapes, each at its own time."""
        out, self._history = self._history, []
        return out

    def close(self) -> None:
        pass
