"""Scraping one target: an HTTP ``/metrics`` (kept-alive), or a run's metrics lines.

The collector scrapes the same targets every second, so each target keeps its own
connection (HTTP/1.1 keep-alive, where the server allows it) and its own
:class:`~hybridnb.monitor.exposition.ExpositionParser`, which parses a series' labels
only the first time it sees them. Both matter: at 20 targets a second, connecting and
parsing were most of the collector's CPU.

>>> HTTPScraper("http://127.0.0.1:9/metrics", {"job": "x"}, timeout=0.5).path
'/metrics'
"""

from __future__ import annotations

import http.client
import time
import urllib.parse

from .exposition import ExpositionParser, SeriesKey

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


class RunReader:
    """Reads a training run's ``metrics.jsonl`` incrementally into ``hybridnb_train_*``.

    For runs that serve no HTTP exposition: the collector reads their lines directly.
    """

    def __init__(self, run_dir: str, labels: Labels):
        from ..train.metrics import GAUGES, MetricsFollower

        self.follower = MetricsFollower(run_dir, keep=False)
        self.names = {field: name for name, (field, _) in GAUGES.items()}
        self.latest: dict[str, float] = {}
        self.labels = tuple(sorted(labels.items()))

    def scrape(self) -> list[KeyedSample]:
        from ..train.metrics import latest_values

        if not self.follower.path.parent.exists():
            raise OSError(f"run directory {self.follower.path.parent} is gone")
        rows = self.follower.poll()
        # The same reading of the lines as the run's own exposition, plus where it is.
        for field, value in latest_values(rows).items():
            self.latest[self.names[field]] = value
        steps = [row for row in rows if row.get("kind") == "step"]
        if steps:
            self.latest["hybridnb_train_step"] = float(steps[-1].get("step", 0))
            self.latest["hybridnb_train_last_step_timestamp_seconds"] = float(
                steps[-1].get("time", time.time()))
        return [((name, self.labels), value) for name, value in self.latest.items()]

    def close(self) -> None:
        pass
