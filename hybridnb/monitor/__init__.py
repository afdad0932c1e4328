"""Monitoring: metrics from everything started, plots in the notebook, alert rules.

- :mod:`~hybridnb.monitor.names`: the metric families hybridnb exposes, host metrics.
- :class:`Collector`: the embedded collector (scrapes what the state store lists into
  SQLite, evaluates alert rules); :class:`Monitor`: one query API over the embedded
  store or a real Prometheus.
- :func:`dashboard` and the ``plot_*`` functions: matplotlib figures for notebooks.
- :class:`Rule`, :func:`default_rules`, :func:`load_rules`: alerting.
- :func:`write_exports`: Prometheus file_sd and rules, Grafana, Kubernetes objects.
- :func:`parse_exposition`, :class:`ExpositionParser`: the Prometheus text format,
  parsed fast enough to scrape every second (:mod:`~hybridnb.exposition`).

Imports are lazy: ``import hybridnb.monitor`` loads nothing heavy.

>>> import hybridnb.monitor as mon
>>> mon.FAMILIES["up"].type
'gauge'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "FAMILIES": "hybridnb.monitor.names:FAMILIES",
    "MetricFamily": "hybridnb.monitor.names:MetricFamily",
    "host_exposition": "hybridnb.monitor.names:host_exposition",
    "register_metric": "hybridnb.monitor.names:register_metric",
    "SampleStore": "hybridnb.monitor.store:SampleStore",
    "Collector": "hybridnb.monitor.collector:Collector",
    "Target": "hybridnb.monitor.targets:Target",
    "discover": "hybridnb.monitor.targets:discover",
    "ExpositionParser": "hybridnb.exposition:ExpositionParser",
    "parse_exposition": "hybridnb.exposition:parse",
    "Monitor": "hybridnb.monitor.query:Monitor",
    "Rule": "hybridnb.monitor.alerts:Rule",
    "AlertManager": "hybridnb.monitor.alerts:AlertManager",
    "default_rules": "hybridnb.monitor.alerts:default_rules",
    "load_rules": "hybridnb.monitor.alerts:load_rules",
    "rules_yaml": "hybridnb.monitor.alerts:rules_yaml",
    "dashboard": "hybridnb.monitor.plots:dashboard",
    "plot_latency": "hybridnb.monitor.plots:plot_latency",
    "plot_requests": "hybridnb.monitor.plots:plot_requests",
    "plot_training": "hybridnb.monitor.plots:plot_training",
    "plot_cluster": "hybridnb.monitor.plots:plot_cluster",
    "file_sd": "hybridnb.monitor.exports:file_sd",
    "scrape_config": "hybridnb.monitor.exports:scrape_config",
    "grafana_dashboard": "hybridnb.monitor.exports:grafana_dashboard",
    "service_monitor": "hybridnb.monitor.exports:service_monitor",
    "prometheus_rule": "hybridnb.monitor.exports:prometheus_rule",
    "write_exports": "hybridnb.monitor.exports:write_exports",
    "status": "hybridnb.monitor.exports:status",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ..exposition import ExpositionParser
    from ..exposition import parse as parse_exposition
    from .alerts import AlertManager, Rule, default_rules, load_rules, rules_yaml
    from .collector import Collector
    from .exports import (
        file_sd,
        grafana_dashboard,
        prometheus_rule,
        scrape_config,
        service_monitor,
        status,
        write_exports,
    )
    from .names import FAMILIES, MetricFamily, host_exposition, register_metric
    from .plots import dashboard, plot_cluster, plot_latency, plot_requests, plot_training
    from .query import Monitor
    from .store import SampleStore
    from .targets import Target, discover

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
