"""The embedded collector: scrape what the user started, at an interval, into the store.

Targets come from the state store (active endpoints' ``/metrics``, clusters' scheduler
dashboard ``/metrics``, training runs' metrics lines), plus any added by hand with
:meth:`Collector.add_target`. Each round scrapes every target concurrently with short
timeouts, adds ``up``/``scrape_duration_seconds``/``scrape_samples_scraped`` per target
and the host's metrics, stores everything in one batched write, then evaluates alert
rules. An unreachable target costs at most its timeout and is recorded as ``up 0``.

>>> import tempfile, os
>>> with Collector(interval=0.2, store_path=os.path.join(tempfile.mkdtemp(), "m.db"),
...                discover=False, host=False) as c:
...     c.collect_once()["samples"]
0
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..state import Kind, StateStore
from .store import Labels, Sample, SampleStore

if TYPE_CHECKING:
    from .alerts import AlertManager, Rule

logger = logging.getLogger(__name__)

JOBS = {Kind.endpoint: "hybridnb-endpoint", Kind.cluster: "hybridnb-dask",
        Kind.run: "hybridnb-train"}


@dataclass(frozen=True)
class Target:
    """Something to scrape: an HTTP ``/metrics`` URL, or a training run directory.

    ``instance`` is ``host:port`` (or the run name); ``labels`` are added to its samples.
    """

    job: str
    instance: str
    url: str | None = None
    run_dir: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def all_labels(self) -> Labels:
        return {"job": self.job, "instance": self.instance, **dict(self.labels)}


def metrics_url(address: str, path: str = "/metrics") -> str:
    """``http://host:port`` (or a dashboard link ending in ``/status``) → its metrics URL.

    >>> metrics_url("http://127.0.0.1:8787/status")
    'http://127.0.0.1:8787/metrics'
    """
    parts = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    prefix = parts.path.rsplit("/status", 1)[0].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{prefix}{path}"


def discover(store: StateStore | None = None) -> list[Target]:
    """Targets for everything active in the state store.

    Endpoints are scraped at ``address + /metrics``; clusters at their dashboard
    (``spec["dashboard"]``, when the record has one); runs through ``spec["run_dir"]``.
    """
    store = store or StateStore()
    out: list[Target] = []
    for rec in store.list(active=True):
        labels = (("name", rec.name),)
        if rec.kind is Kind.endpoint and rec.address:
            url = metrics_url(rec.address)
        elif rec.kind is Kind.cluster and rec.spec.get("dashboard"):
            url = metrics_url(str(rec.spec["dashboard"]))
        elif rec.kind is Kind.run and rec.spec.get("run_dir"):
            out.append(Target(JOBS[Kind.run], rec.name, run_dir=str(rec.spec["run_dir"]),
                              labels=(("run", rec.name),)))
            continue
        else:
            continue
        out.append(Target(JOBS[rec.kind], urllib.parse.urlsplit(url).netloc, url=url,
                          labels=labels))
    return out


def scrape_http(url: str, timeout: float) -> list[Sample]:
    """GET ``url`` and parse the Prometheus text format; raises on any failure."""
    from prometheus_client.parser import text_string_to_metric_families

    parts = urllib.parse.urlsplit(url)
    # http.client, not httpx: a scrape is one small GET, and the per-request CPU of a
    # full client library dominates the collector's cost at 20 targets a second.
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=timeout)
    try:
        conn.request("GET", parts.path or "/metrics",
                     headers={"Accept": "text/plain;version=0.0.4"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status} from {url}")
    finally:
        conn.close()
    out: list[Sample] = []
    for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
        for s in family.samples:
            if s.name.endswith("_created"):  # client-library bookkeeping, never queried
                continue
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


class _RunReader:
    """Reads a training run's ``metrics.jsonl`` incrementally into ``hybridnb_train_*``."""

    FIELDS = {"loss": "hybridnb_train_loss", "lr": "hybridnb_train_learning_rate",
              "samples_per_second": "hybridnb_train_samples_per_second",
              "step_seconds": "hybridnb_train_step_seconds"}

    def __init__(self, run_dir: str):
        from ..train.metrics import MetricsFollower

        self.follower = MetricsFollower(run_dir, keep=False)
        self.latest: dict[str, float] = {}

    def samples(self) -> list[Sample]:
        if not self.follower.path.parent.exists():
            raise OSError(f"run directory {self.follower.path.parent} is gone")
        for row in self.follower.poll():
            if row.get("kind") == "step":
                for key, name in self.FIELDS.items():
                    if isinstance(row.get(key), (int, float)):
                        self.latest[name] = float(row[key])
                self.latest["hybridnb_train_step"] = float(row.get("step", 0))
                self.latest["hybridnb_train_last_step_timestamp_seconds"] = float(
                    row.get("time", time.time()))
            for key in ("val_accuracy", "test_accuracy", "accuracy"):
                if isinstance(row.get(key), (int, float)):
                    self.latest["hybridnb_train_accuracy"] = float(row[key])
        return [(name, {}, value) for name, value in self.latest.items()]


class Collector:
    """Scrape targets every ``interval`` seconds in a background thread.

    Parameters
    ----------
    interval:
        Seconds between rounds.
    retention:
        How long samples are kept (``"1h"``).
    store_path:
        SQLite file (default ``$HYBRIDNB_HOME/metrics.db``).
    timeout:
        Seconds one scrape may take (default: ``min(interval, 2)``); never longer.
    discover:
        Find targets in the state store (every ``rediscover`` seconds).
    rules:
        Alert rules evaluated after each round (see :mod:`hybridnb.monitor.alerts`).
    webhook:
        URL that receives alert notifications (JSON POST), or ``None``.
    host:
        Record the host's CPU/memory/GPU metrics under ``job="hybridnb-host"``.

    Examples
    --------
    >>> import tempfile, os
    >>> c = Collector(store_path=os.path.join(tempfile.mkdtemp(), "m.db"), discover=False)
    >>> c.add_target("http://127.0.0.1:9/metrics", job="demo")
    >>> c.collect_once()["down"]
    ['127.0.0.1:9']
    >>> c.stop()
    """

    def __init__(self, interval: float = 1.0, retention: str | float = "1h",
                 store_path: str | Path | None = None, *, timeout: float | None = None,
                 discover: bool = True, rediscover: float = 10.0,
                 state: StateStore | None = None, rules: list[Rule] | None = None,
                 webhook: str | None = None, host: bool = True, workers: int = 4):
        from .alerts import AlertManager

        self.interval = float(interval)
        self.timeout = float(timeout) if timeout is not None else min(self.interval, 2.0)
        self.store = SampleStore(store_path, retention=retention)
        self.discover = discover
        self.rediscover = rediscover
        self.state = state
        self.host = host
        self.alerts: AlertManager = AlertManager(rules or [], self.store, webhook=webhook)
        self._manual: dict[str, Target] = {}
        self._found: list[Target] = []
        self._found_at = float("-inf")
        self._readers: dict[str, _RunReader] = {}
        self._health: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        # One round at a time: the thread and a caller's collect_once() never interleave.
        self._round = threading.Lock()
        self.rounds = 0

    # -- targets ---------------------------------------------------------------------

    def add_target(self, target: str | Any, *, job: str = "hybridnb-custom",
                   name: str | None = None) -> None:
        """Scrape ``target`` too: a metrics URL, an endpoint URL, or a ClusterHandle."""
        link = getattr(target, "dashboard_link", None)
        url = metrics_url(link) if link else (
            target if str(target).endswith("/metrics") else metrics_url(str(target)))
        if link:
            job = "hybridnb-dask"
        netloc = urllib.parse.urlsplit(url).netloc
        labels = (("name", name),) if name else ()
        self._manual[url] = Target(job, netloc, url=url, labels=labels)

    def targets(self) -> list[Target]:
        """The targets of the next round."""
        if self.discover and time.monotonic() - self._found_at > self.rediscover:
            try:
                self._found = discover(self.state)
            except Exception as exc:  # the state store is advisory: keep the last list
                logger.warning("target discovery failed: %s", exc)
            self._found_at = time.monotonic()
        seen = {t.url or t.run_dir for t in self._manual.values()}
        return [*self._manual.values(), *(t for t in self._found
                                          if (t.url or t.run_dir) not in seen)]

    def health(self) -> list[dict[str, Any]]:
        """Per target: job, instance, up, last error, last scrape time and duration."""
        return list(self._health.values())

    # -- one round -------------------------------------------------------------------

    def _scrape(self, target: Target) -> tuple[list[Sample], str | None, float]:
        start = time.perf_counter()
        try:
            if target.run_dir is not None:
                reader = self._readers.setdefault(target.run_dir, _RunReader(target.run_dir))
                samples = reader.samples()
            else:
                assert target.url is not None
                samples = scrape_http(target.url, self.timeout)
            return samples, None, time.perf_counter() - start
        except Exception as exc:  # any failure means "down", never a crashed thread
            return [], f"{type(exc).__name__}: {exc}", time.perf_counter() - start

    def collect_once(self, now: float | None = None) -> dict[str, Any]:
        """Scrape every target once, store the samples, evaluate rules.

        Returns a summary: ``up`` (count), ``down`` (instances) and ``samples``.
        """
        with self._round:
            return self._collect(time.time() if now is None else now)

    def _collect(self, now: float) -> dict[str, Any]:
        targets = self.targets()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers,
                                            thread_name_prefix="hybridnb-scrape")
        results = list(self._pool.map(self._scrape, targets))
        batch: list[Sample] = []
        down = []
        for target, (samples, error, seconds) in zip(targets, results, strict=False):
            base = target.all_labels
            batch += [(name, {**labels, **base}, value) for name, labels, value in samples]
            batch += [("up", base, 0.0 if error else 1.0),
                      ("scrape_duration_seconds", base, seconds),
                      ("scrape_samples_scraped", base, float(len(samples)))]
            if error:
                down.append(target.instance)
            self._health[target.url or target.run_dir or target.instance] = {
                "job": target.job, "instance": target.instance,
                "name": dict(target.labels).get("name") or dict(target.labels).get("run"),
                "up": error is None, "error": error, "last_scrape": now,
                "duration_seconds": seconds}
        if self.host:
            from .names import host_samples

            hl = {"job": "hybridnb-host", "instance": "localhost"}
            batch += [(name, hl, value) for name, value in host_samples()]
        self.store.append(batch, ts=now)
        self.rounds += 1
        self.alerts.evaluate(now)
        return {"up": len(targets) - len(down), "down": down, "samples": len(batch)}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Collector:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hybridnb-collector",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.collect_once()
            except Exception:  # keep collecting; say why once per failure
                logger.exception("metrics collection round failed")
            next_at += self.interval
            # Fell behind (a slow round): skip missed rounds instead of bursting.
            next_at = max(next_at, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        """Stop the thread and the scrape pool; waits for the current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 30.0)
            self._thread = None
        with self._round:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_thread", None) is not None and self.running:
            import warnings

            warnings.warn("Collector was never stopped; stopping it now", ResourceWarning,
                          stacklevel=1)
            self._stop.set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"Collector(interval={self.interval:g}s, {len(self._health)} targets, "
                f"{state}, {self.store.path})")

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(h['job'])}</td><td>{escape(h['instance'])}</td>"
            f"<td>{'up' if h['up'] else 'down'}</td><td>{escape(h['error'] or '')}</td></tr>"
            for h in self.health())
        return (f"<p>{escape(repr(self))}</p><table><tr><th>job</th><th>instance</th>"
                f"<th>state</th><th>error</th></tr>{rows}</table>")
