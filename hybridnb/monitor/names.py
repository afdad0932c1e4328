"""The metric families hybridnb exposes, and the host's own metrics.

One table (:data:`FAMILIES`) names every family, with its type, unit, help text and
labels, so alert rules, plots, the Grafana dashboard and the docs agree on spelling.
Conventions (DESIGN.md, fixed): ``hybridnb_`` prefix, base units (``_seconds``,
``_bytes``, ``_ratio``), counters end in ``_total``, labels take bounded values only.

The collector adds Prometheus' own per-target series (``up``, ``scrape_duration_seconds``,
``scrape_samples_scraped``) with the same meaning as in Prometheus, so one rule works
against both backends.

>>> FAMILIES["hybridnb_endpoint_requests_total"].type
'counter'
>>> "hybridnb_endpoint_request_duration_seconds_bucket" in known_series_names()
True
>>> b"hybridnb_host_memory_total_bytes" in host_exposition()
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError, did_you_mean
from ..serve.edge.metrics import HELP as EDGE_HELP
from ..serve.metrics import HELP as ENDPOINT_HELP
from ..train.metrics import GAUGES as TRAIN_GAUGES


@dataclass(frozen=True)
class MetricFamily:
    """One metric family: its name as scraped, Prometheus type, unit, help and labels."""

    name: str
    type: str  # counter, gauge, histogram
    help: str
    unit: str = ""
    labels: tuple[str, ...] = ()
    source: str = "endpoint"  # who exposes it: endpoint, router, train, host, dask, scrape, edge

    def series_names(self) -> list[str]:
        """The names its samples carry (``_bucket``/``_sum``/``_count`` for histograms)."""
        if self.type == "histogram":
            return [f"{self.name}_{s}" for s in ("bucket", "sum", "count")]
        return [self.name]


def _f(*args: object, **kw: object) -> MetricFamily:
    return MetricFamily(*args, **kw)  # type: ignore[arg-type]


def _router_families() -> list[MetricFamily]:
    from ..serve.router import RouterMetrics

    out = []
    for fam in RouterMetrics().registry.collect():
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        unit = "seconds" if name.endswith("_seconds") else ""
        out.append(_f(name, fam.type, fam.documentation, unit, source="router"))
    return out


_ALL = [
    # Endpoints: one registry per server process (hybridnb.serve.metrics, whose help texts
    # are the only copy).
    *(_f(name, kind, ENDPOINT_HELP[name], unit, labels) for name, kind, unit, labels in [
        ("hybridnb_endpoint_requests_total", "counter", "", ("code", "route")),
        ("hybridnb_endpoint_request_duration_seconds", "histogram", "seconds", ("route",)),
        ("hybridnb_endpoint_batch_size", "histogram", "", ()),
        ("hybridnb_endpoint_queue_depth", "gauge", "", ()),
        ("hybridnb_endpoint_in_flight", "gauge", "", ()),
        ("hybridnb_endpoint_rejected_total", "counter", "", ()),
        ("hybridnb_endpoint_cache_lookups_total", "counter", "", ("result",))]),
    # Routers in front of an endpoint's replicas (hybridnb.serve.router.RouterMetrics,
    # whose help texts are the only copy).
    *_router_families(),
    # Training runs, read from the run's metrics lines: the gauges a run exposes itself
    # (hybridnb.train.metrics.GAUGES, whose help texts are the only copy), and two more.
    *(_f(name, "gauge", text, "seconds" if name.endswith("_seconds") else "",
         source="train") for name, (_, text) in TRAIN_GAUGES.items()),
    _f("hybridnb_train_step", "gauge", "Latest optimizer step logged.", source="train"),
    _f("hybridnb_train_last_step_timestamp_seconds", "gauge",
       "Unix time when the latest step was logged.", "seconds", source="train"),
    # Edge sites: their agents' own families (hybridnb.serve.edge.metrics, whose help
    # texts are the only copy), forwarded through the buffer, and the centre's contact.
    *(_f(name, kind, EDGE_HELP[name], unit, labels, source="edge")
      for name, kind, unit, labels in [
          ("hybridnb_edge_endpoint_ready", "gauge", "", ()),
          ("hybridnb_edge_buffer_records", "gauge", "", ()),
          ("hybridnb_edge_buffer_bytes", "gauge", "bytes", ()),
          ("hybridnb_edge_buffer_dropped_total", "counter", "", ()),
          ("hybridnb_edge_rollouts_total", "counter", "", ("result",)),
          ("hybridnb_edge_last_contact_timestamp_seconds", "gauge", "seconds", ())]),
    # The host the collector runs on.
    _f("hybridnb_host_cpu_utilization_ratio", "gauge",
       "Busy fraction of all CPU cores since the last reading, 0-1.", "ratio", source="host"),
    _f("hybridnb_host_cpu_cores", "gauge", "Logical CPU cores.", source="host"),
    _f("hybridnb_host_memory_used_bytes", "gauge", "Memory in use (total - available).",
       "bytes", source="host"),
    _f("hybridnb_host_memory_total_bytes", "gauge", "Physical memory.", "bytes",
       source="host"),
    _f("hybridnb_host_gpus", "gauge", "CUDA devices visible (0 without torch or a GPU).",
       source="host"),
    # Added by the collector for every target, as Prometheus does.
    _f("up", "gauge", "1 if the last scrape of the target succeeded, else 0.",
       source="scrape"),
    _f("scrape_duration_seconds", "gauge", "Time the last scrape took.", "seconds",
       source="scrape"),
    _f("scrape_samples_scraped", "gauge", "Samples the last scrape returned.",
       source="scrape"),
    # Dask's scheduler and workers (distributed.http.*.prometheus): the ones rules use.
    _f("dask_scheduler_workers", "gauge", "Number of workers known by scheduler.", "",
       ("state",), source="dask"),
    _f("dask_scheduler_tasks", "gauge", "Number of tasks known by scheduler.", "",
       ("state",), source="dask"),
    _f("dask_worker_memory_bytes", "gauge", "Memory breakdown of a worker.", "bytes",
       ("type",), source="dask"),
]

#: Every family hybridnb knows, by name.
FAMILIES: dict[str, MetricFamily] = {f.name: f for f in _ALL}

#: Prefixes of families exposed by peers whose full lists hybridnb does not repeat.
FOREIGN_PREFIXES = ("dask_", "process_", "python_")

_EXTRA: set[str] = set()


def register_metric(*names: str) -> None:
    """Allow rules and queries to name metrics hybridnb does not define (your own).

    >>> register_metric("myapp_widgets_total")
    >>> check_metric("myapp_widgets_total")
    'myapp_widgets_total'
    """
    _EXTRA.update(names)


def known_series_names() -> set[str]:
    """Every sample name the families produce, plus registered ones."""
    out = {s for f in FAMILIES.values() for s in f.series_names()}
    return out | _EXTRA


def check_metric(name: str, *, where: str = "") -> str:
    """``name`` if it is a known metric, else a :class:`UsageError` naming it.

    >>> check_metric("hybridnb_endpoint_request_total")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: unknown metric 'hybridnb_endpoint_request_total' (did you mean ...?)
    """
    if name in known_series_names() or name.startswith(FOREIGN_PREFIXES):
        return name
    suffix = f" in {where}" if where else ""
    raise UsageError(f"unknown metric {name!r}{suffix}"
                     f"{did_you_mean(name, known_series_names())}")


# --------------------------------------------------------------------------- host

def host_samples() -> list[tuple[str, float]]:
    """``(name, value)`` of the host metrics now (psutil; GPUs only if torch is loaded)."""
    import sys

    import psutil

    mem = psutil.virtual_memory()
    gpus = 0
    # Importing torch costs seconds: count GPUs only where something already loaded it.
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            gpus = int(torch.cuda.device_count())
        except Exception:  # a broken CUDA setup still lets the rest be reported
            gpus = 0
    return [
        ("hybridnb_host_cpu_utilization_ratio", psutil.cpu_percent(interval=None) / 100.0),
        ("hybridnb_host_cpu_cores", float(os.cpu_count() or 1)),
        ("hybridnb_host_memory_used_bytes", float(mem.total - mem.available)),
        ("hybridnb_host_memory_total_bytes", float(mem.total)),
        ("hybridnb_host_gpus", float(gpus)),
    ]


def exposition(samples: Iterable[tuple[str, dict[str, str], float]]) -> bytes:
    """Prometheus text format of ``(name, labels, value)`` samples of known families.

    HELP and TYPE come from :data:`FAMILIES`; samples are grouped by family.

    >>> print(exposition([("hybridnb_host_gpus", {}, 0.0)]).decode().splitlines()[-1])
    hybridnb_host_gpus 0.0
    """
    groups: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in samples:
        groups.setdefault(name, []).append((labels, value))
    lines: list[str] = []
    for name, rows in groups.items():
        fam = FAMILIES.get(name)
        if fam is None:
            raise UsageError(f"no metric family {name!r}{did_you_mean(name, FAMILIES)}")
        lines += [f"# HELP {name} {_escape_help(fam.help)}", f"# TYPE {name} {fam.type}"]
        for labels, value in rows:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{inner}}} {float(value)!r}" if inner
                         else f"{name} {float(value)!r}")
    return ("\n".join(lines) + "\n").encode()


def host_exposition() -> bytes:
    """The host metrics in Prometheus text format (``promtool check metrics`` clean)."""
    return exposition((name, {}, value) for name, value in host_samples())


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
