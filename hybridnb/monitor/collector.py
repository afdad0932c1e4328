"""The embedded collector: scrape what the user started, at an interval, into the store.

Targets come from the state store (see :mod:`hybridnb.monitor.targets`: endpoints with
their routers and replicas, Dask schedulers and their workers, training runs), plus any
added by hand with :meth:`Collector.add_target`. What was started before the collector
is found at its first round; each round then checks the store's active records (one
small query) and follows what starts, scales or stops at once, without waiting for the
periodic rediscovery. A training run is read from its run directory, so its whole
history is stored at the times it was logged — also a run that ended before the
collector started, within the store's retention.

Each round scrapes every target concurrently with short timeouts, adds
``up``/``scrape_duration_seconds``/``scrape_samples_scraped`` per target and the host's
metrics, stores everything in one transaction, then evaluates alert rules. An
unreachable target costs at most its timeout and is recorded as ``up 0``; the series it
reported, and every series of a target that is gone, are marked stale (as Prometheus
does), so they end there instead of lingering for the five-minute lookback.

What a round costs is kept small because it runs every second in a notebook kernel: a
target keeps its connection and its parser (:mod:`hybridnb.monitor.scrape`), which
turns a known series into its store key with one lookup; the store keeps its write
connection. ``benchmarks/bench_monitor.py`` measures it.

>>> import tempfile, os
>>> with Collector(interval=0.2, store_path=os.path.join(tempfile.mkdtemp(), "m.db"),
...                discover=False, host=False) as c:
...     c.collect_once()["samples"]
0
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..exposition import SeriesKey
from ..state import Kind, StateStore
from .scrape import HTTPScraper, KeyedSample, RunReader, TimedSample
from .store import SampleStore
from .targets import JOBS, WORKER_JOB, Target, discover, metrics_url

if TYPE_CHECKING:
    from .alerts import AlertManager, Rule

__all__ = ["JOBS", "WORKER_JOB", "Collector", "Target", "discover", "metrics_url"]

logger = logging.getLogger(__name__)


class _Scraped:
    """A target's scraper and its fixed series (``up`` and the scrape's own figures)."""

    def __init__(self, target: Target, timeout: float, store: SampleStore):
        labels = target.all_labels
        if target.run_dir is not None:
            # Lines an earlier collector already stored (same store) are not stored twice.
            from .names import FAMILIES

            seen = [store.latest(name, labels) for name, fam in FAMILIES.items()
                    if fam.source == "train"]
            since = max((t for t in seen if t is not None), default=None)
            self.scraper: HTTPScraper | RunReader = RunReader(
                target.run_dir, labels, live=not target.ended, since=since)
        else:
            self.scraper = HTTPScraper(str(target.url), labels, timeout)
        base = tuple(sorted(labels.items()))
        #: The series of the last successful scrape: marked stale when they stop.
        self.keys: set[SeriesKey] = set()
        self.up: SeriesKey = ("up", base)
        self.duration: SeriesKey = ("scrape_duration_seconds", base)
        self.count: SeriesKey = ("scrape_samples_scraped", base)


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
        Find targets in the state store: at the first round, whenever its active records
        change, and every ``rediscover`` seconds (Dask workers come and go unrecorded).
    rules:
        Alert rules evaluated after each round (see :mod:`hybridnb.monitor.alerts`).
    webhook:
        URL that receives alert notifications (JSON POST), or ``None``.
    host:
        Record the host's CPU/memory/GPU metrics under ``job="hybridnb-host"``.
    sources:
        Other things read each round, next to the scrapes: objects with
        ``collect(now) -> (health, samples)`` and ``close()``, such as edge sites
        (:class:`hybridnb.monitor.edge.EdgeIngest`); see :meth:`add_source`.

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
                 webhook: str | None = None, host: bool = True, workers: int = 4,
                 sources: list[Any] | None = None):
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
        self._sources: list[Any] = list(sources or [])
        self._source_health: dict[str, dict[str, Any]] = {}
        self._found: list[Target] = []
        self._found_at = float("-inf")
        self._fingerprint: Any = None
        self._ever_up: set[SeriesKey] = set()
        self._scraped: dict[str, _Scraped] = {}
        self._worker_totals: dict[str, float] = {}
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
        """Scrape ``target`` too: a metrics URL, an endpoint URL, a ClusterHandle, or an
        :class:`~hybridnb.serve.Endpoint` (its router and its replicas now, labelled).

        Targets added here are fixed; discovery (``discover=True``) follows scaling.
        """
        status = getattr(target, "status", None)
        if callable(status) and hasattr(target, "bundle"):  # an Endpoint
            from .targets import endpoint_targets

            info = status()
            for t in endpoint_targets(name or info["model"], info["url"], info["replicas"]):
                self._manual[t.key] = t
            return
        link = getattr(target, "dashboard_link", None)
        url = metrics_url(link) if link else (
            target if str(target).endswith("/metrics") else metrics_url(str(target)))
        if link:
            job = "hybridnb-dask"
            name = name or getattr(target, "name", None)
        netloc = urllib.parse.urlsplit(url).netloc
        labels = (("name", name),) if name else ()
        self._manual[url] = Target(job, netloc, url=url, labels=labels)

    def add_source(self, source: Any) -> None:
        """Read ``source`` each round too (``collect(now) -> (health, samples)``)."""
        self._sources.append(source)

    def targets(self) -> list[Target]:
        """The targets of the next round."""
        if self.discover:
            try:
                self._discover()
            except Exception as exc:  # the state store is advisory: keep the last list
                logger.warning("target discovery failed: %s", exc)
                self._found_at = time.monotonic()
        seen = {t.key for t in self._manual.values()}
        return [*self._manual.values(), *(t for t in self._found if t.key not in seen)]

    def _discover(self) -> None:
        state = self.state if self.state is not None else StateStore()
        self.state = state
        records = state.list(active=True)
        # What would change the targets: a record started or ended, a new address, a
        # changed spec (a deployment's replicas). Not a run's progress messages.
        fingerprint = [(r.id, r.status, r.address, r.spec) for r in records]
        if fingerprint == self._fingerprint and \
                time.monotonic() - self._found_at <= self.rediscover:
            return
        self._found = discover(state, timeout=self.timeout, files=True, records=records,
                               since=time.time() - self.store.retention)
        self._fingerprint = fingerprint
        self._found_at = time.monotonic()

    def health(self) -> list[dict[str, Any]]:
        """Per target: job, instance, up, last error, last scrape time and duration; then
        per source (an edge site adds ``state`` and ``since_contact_seconds``)."""
        return [*self._health.values(), *self._source_health.values()]

    # -- one round -------------------------------------------------------------------

    def _scrape(self, target: Target) -> tuple[list[KeyedSample], str | None, float,
                                               list[TimedSample]]:
        start = time.perf_counter()
        try:
            state = self._scraped.get(target.key)
            if state is None:
                state = self._scraped[target.key] = _Scraped(target, self.timeout,
                                                             self.store)
            scraper = state.scraper
            if isinstance(scraper, RunReader):
                scraper.live = not target.ended  # a followed run that has just ended
            samples = scraper.scrape()
            timed = scraper.history() if isinstance(scraper, RunReader) else []
            return samples, None, time.perf_counter() - start, timed
        except Exception as exc:  # any failure means "down", never a crashed thread
            return [], f"{type(exc).__name__}: {exc}", time.perf_counter() - start, []

    def collect_once(self, now: float | None = None) -> dict[str, Any]:
        """Scrape every target once, store the samples, evaluate rules.

        Returns a summary: ``up`` (count), ``down`` (instances) and ``samples``.
        """
        with self._round:
            return self._collect(time.time() if now is None else now)

    def _forget(self, keep: set[str]) -> list[SeriesKey]:
        """Close the connections of targets that are gone, drop their health, and
        return their series, to be marked stale (as Prometheus does)."""
        stale: list[SeriesKey] = []
        for key in set(self._scraped) - keep:
            state = self._scraped.pop(key)
            state.scraper.close()
            stale += [*state.keys, state.up, state.duration, state.count]
            self._ever_up.discard(state.up)
        for key in set(self._health) - keep:
            del self._health[key]
        for key in set(self._worker_totals) - keep:
            del self._worker_totals[key]
        return stale

    def _refresh_soon(self) -> None:
        """Discover again in the next round, but at most every 2 s: a flapping target
        must not make every round ask every scheduler for its workers."""
        soon = max(self._found_at + 2.0, time.monotonic()) - self.rediscover
        self._found_at = min(self._found_at, soon)

    def _watch_workers(self, key: str, samples: list[KeyedSample]) -> None:
        # The scheduler's own exposition counts its workers (by state): when the total
        # changes, workers came or went, so ask the scheduler which ones they are.
        total = sum(v for (name, _), v in samples if name == "dask_scheduler_workers")
        if self._worker_totals.get(key, total) != total:
            self._refresh_soon()
        self._worker_totals[key] = total

    def _collect(self, now: float) -> dict[str, Any]:
        targets = self.targets()
        stale = self._forget({t.key for t in targets})
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers,
                                            thread_name_prefix="hybridnb-scrape")
        read = [self._pool.submit(source.collect, now) for source in self._sources]
        results = list(self._pool.map(self._scrape, targets))
        batch: list[KeyedSample] = []
        history: list[TimedSample] = []
        down = []
        live = 0
        for target, (samples, error, seconds, timed) in zip(targets, results, strict=True):
            state = self._scraped.get(target.key)
            batch += samples
            history += timed
            if state is not None:
                # A failed scrape, or a run that has just ended: what it reported last
                # is gone now, not for another five minutes of lookback.
                if error or target.ended:
                    stale += state.keys
                state.keys = {key for key, _ in samples}
            if target.ended:  # a finished run's lines, read once: no up, no health
                if state is not None and state.up in self._ever_up:
                    stale += [state.up, state.duration, state.count]
                    self._ever_up.discard(state.up)
                self._health.pop(target.key, None)
                continue
            live += 1
            if state is not None:
                batch += [(state.up, 0.0 if error else 1.0), (state.duration, seconds),
                          (state.count, float(len(samples)))]
                self._ever_up.add(state.up)
            if error:
                down.append(target.instance)
                if target.job == WORKER_JOB:  # a worker left: ask the scheduler soon
                    self._refresh_soon()
            elif target.job == JOBS[Kind.cluster]:
                self._watch_workers(target.key, samples)
            labels = dict(target.labels)
            self._health[target.key] = {
                "job": target.job, "instance": target.instance,
                "name": labels.get("name") or labels.get("run"),
                "up": error is None, "error": error, "last_scrape": now,
                "duration_seconds": seconds}
        for future in read:
            try:
                health, samples = future.result()
            except Exception:  # a source that fails is logged, the round goes on
                logger.exception("a metrics source failed")
                continue
            batch += samples
            self._source_health[f"{health['job']}:{health['instance']}"] = health
        if self.host:
            from .names import host_samples

            hl = (("instance", "localhost"), ("job", "hybridnb-host"))
            batch += [((name, hl), value) for name, value in host_samples()]
        self.store.append_keyed(batch, ts=now, timed=history, stale=stale)
        self.rounds += 1
        self.alerts.evaluate(now)
        return {"up": live - len(down), "down": down, "samples": len(batch) + len(history)}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Collector:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hybridnb-collector",
                                            daemon=True)
            self._thread.start()
            lifecycle.close_at_exit(self, "stop")  # stopped cleanly if still running then
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
        lifecycle.forget(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 30.0)
            self._thread = None
        with self._round:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            for state in self._scraped.values():
                state.scraper.close()
            self._scraped.clear()
            for source in self._sources:
                source.close()
            self.store.close()

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
            f"<td>{h.get('state') or ('up' if h['up'] else 'down')}</td>"
            f"<td>{escape(h['error'] or '')}</td></tr>"
            for h in self.health())
        return (f"<p>{escape(repr(self))}</p><table><tr><th>job</th><th>instance</th>"
                f"<th>state</th><th>error</th></tr>{rows}</table>")
