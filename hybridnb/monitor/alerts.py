"""Alert rules: defined once (YAML or Python), evaluated here, exported to Prometheus.

A :class:`Rule` is an expression (the PromQL subset of :mod:`hybridnb.monitor.promql`)
or a threshold on one metric, a ``for`` duration, a severity and labels. The expression
and its metric names are checked when the rule is defined, so a typo fails at once with
the rule's name. :class:`AlertManager` evaluates rules after each collection round and
keeps Prometheus' lifecycle: an alert is *pending* while its condition holds for less
than ``for``, then *firing*, and *resolved* when the condition stops holding.

>>> r = Rule(name="HighLoss", metric="hybridnb_train_loss", above=5, **{"for": "2m"})
>>> r.expr
'hybridnb_train_loss > 5.0'
>>> Rule(name="x", expr="hybridnb_train_los > 1")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hybridnb.errors.UsageError: rule 'x': unknown metric ... (did you mean 'hybridnb_train_loss'?)
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UsageError, did_you_mean
from .store import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from .store import SampleStore

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Rule(BaseModel):
    """One alerting rule.

    Parameters
    ----------
    name:
        The alert's name (``alertname``), e.g. ``EndpointLatencyHigh``.
    expr:
        A PromQL expression; every series it returns is an active alert. Or give
        ``metric`` with ``above``/``below`` for a threshold.
    for:
        How long the condition must hold before the alert fires (``"5m"``).
    severity:
        ``info``, ``warning`` or ``critical``.
    labels, summary:
        Extra labels, and a one-line description (the ``summary`` annotation).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str
    expr: str = ""
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    for_: str = Field("0s", alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""

    def __init__(self, **data: Any):
        name = data.get("name", "?")
        known = {n for n in type(self).model_fields if n != "for_"} | {"for", "for_"}
        for key in data:
            if key not in known:
                raise UsageError(f"rule {name!r}: unknown key {key!r}"
                                 f"{did_you_mean(key, sorted(known - {'for_'}))}")
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}"
                                 for e in exc.errors())
            raise UsageError(f"rule {name!r}: {problems}") from None
        self._check()

    def _check(self) -> None:
        from .promql import check

        where = f"rule {self.name!r}"
        if not _NAME.match(self.name):
            raise UsageError(f"{where}: the name must be letters, digits and _ (an alertname)")
        if self.metric is not None:
            if self.expr:
                raise UsageError(f"{where}: give either expr or metric with above/below")
            if (self.above is None) == (self.below is None):
                raise UsageError(f"{where}: a threshold needs exactly one of above or below")
            op, limit = (">", self.above) if self.above is not None else ("<", self.below)
            assert limit is not None
            object.__setattr__(self, "expr", f"{self.metric} {op} {float(limit)!r}")
        if not self.expr:
            raise UsageError(f"{where}: give expr, or metric with above/below")
        try:
            parse_duration(self.for_)
            check(self.expr)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None

    @property
    def for_seconds(self) -> float:
        return parse_duration(self.for_)

    def to_prometheus(self) -> dict[str, Any]:
        """This rule as an entry of a Prometheus rule group."""
        out: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_seconds:
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity, **self.labels}
        if self.summary:
            out["annotations"] = {"summary": self.summary}
        return out


def load_rules(source: str | Path | list[dict[str, Any]] | dict[str, Any]) -> list[Rule]:
    """Rules from a YAML file, YAML text, or data (a list, or ``{"rules": [...]}``).

    >>> [r.name for r in load_rules("rules:\\n- name: Down\\n  expr: up == 0\\n")]
    ['Down']
    """
    import yaml

    data: Any = source
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and Path(source).is_file()):
        data = yaml.safe_load(Path(source).read_text())
    elif isinstance(source, str):
        data = yaml.safe_load(source)
    if isinstance(data, dict):
        extra = set(data) - {"rules"}
        if extra:
            key = sorted(extra)[0]
            raise UsageError(f"unknown key {key!r} in rules{did_you_mean(key, ['rules'])}")
        data = data.get("rules") or []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError("rules must be a list of mappings (name, expr, for, severity, …)")
    return [Rule(**r) for r in data]


def default_rules(*, p99_seconds: float = 0.5, error_ratio: float = 0.05,
                  stall_minutes: float = 10, worker_memory_bytes: float = 4 * 2**30,
                  edge_unreachable_minutes: float = 5) -> list[Rule]:
    """The rules hybridnb ships: latency, 5xx ratio, target down, training stalled, memory,
    edge site unreachable.

    An edge site whose link is down is not down: it serves locally and buffers what the
    centre would see. So ``TargetDown`` leaves edge sites out and ``EdgeSiteUnreachable``
    says what is the matter instead (:mod:`hybridnb.monitor.edge`).

    >>> [r.name for r in default_rules()]   # doctest: +NORMALIZE_WHITESPACE
    ['EndpointLatencyHigh', 'EndpointErrorRatioHigh', 'TargetDown', 'TrainingStalled',
     'WorkerMemoryHigh', 'EdgeSiteUnreachable']
    """
    requests = "hybridnb_endpoint_requests_total"
    return [
        Rule(name="EndpointLatencyHigh", severity="warning", **{"for": "5m"},
             expr="histogram_quantile(0.99, sum by (le, instance) (rate("
                  f"hybridnb_endpoint_request_duration_seconds_bucket[5m]))) > {p99_seconds!r}",
             summary=f"p99 latency above {p99_seconds:g} s"),
        Rule(name="EndpointErrorRatioHigh", severity="critical", **{"for": "5m"},
             expr=f'sum by (instance) (rate({requests}{{code=~"5.."}}[5m])) / '
                  f"sum by (instance) (rate({requests}[5m])) > {error_ratio!r}",
             summary=f"more than {error_ratio:.0%} of requests answered 5xx"),
        Rule(name="TargetDown", expr='up{job!="hybridnb-edge"} == 0', severity="critical",
             **{"for": "1m"},
             summary="a replica, scheduler or run cannot be scraped"),
        Rule(name="TrainingStalled", severity="warning", **{"for": "1m"},
             expr="time() - hybridnb_train_last_step_timestamp_seconds > "
                  f"{stall_minutes * 60:g}",
             summary=f"no new training step for {stall_minutes:g} minutes"),
        Rule(name="WorkerMemoryHigh", severity="warning", **{"for": "5m"},
             expr='sum by (instance) (dask_worker_memory_bytes{type!="spilled"}) > '
                  f"{float(worker_memory_bytes)!r}",
             summary="a Dask worker holds more memory than the threshold"),
        Rule(name="EdgeSiteUnreachable", expr='up{job="hybridnb-edge"} == 0',
             severity="warning", **{"for": _whole_duration(edge_unreachable_minutes * 60)},
             summary="an edge site cannot be reached from the centre: it serves locally "
                     "and buffers its metrics until the link returns"),
    ]


def _whole_duration(seconds: float) -> str:
    """A duration Prometheus takes (whole numbers only): ``5m``, or ``3s``."""
    whole = max(0, round(seconds))
    return f"{whole // 60}m" if whole % 60 == 0 and whole else f"{whole}s"


def prometheus_rules(rules: list[Rule], group: str = "hybridnb") -> dict[str, Any]:
    """A Prometheus rule file (``groups:``) for ``rules``; dump it as YAML."""
    return {"groups": [{"name": group, "rules": [r.to_prometheus() for r in rules]}]}


def rules_yaml(rules: list[Rule], group: str = "hybridnb") -> str:
    """The Prometheus alerting rules file as YAML text (``promtool check rules`` clean)."""
    import yaml

    return yaml.safe_dump(prometheus_rules(rules, group), sort_keys=False)


# --------------------------------------------------------------------- evaluation


@dataclass
class AlertEvent:
    """A state change of one alert: ``pending``, ``firing`` or ``resolved``."""

    time: float
    alert: str
    state: str
    severity: str
    labels: dict[str, str]
    value: float | None


@dataclass
class _Active:
    since: float
    state: str
    value: float


class AlertHistory(list[AlertEvent]):
    """Alert events, oldest first; shows as a table in a notebook."""

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [{"time": pd.Timestamp(e.time, unit="s", tz="UTC"), "alert": e.alert,
              "state": e.state, "severity": e.severity,
              "labels": ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())),
              "value": e.value} for e in self],
            columns=["time", "alert", "state", "severity", "labels", "value"])

    def _repr_html_(self) -> str:
        colors = {"firing": "#c62828", "pending": "#ef6c00", "resolved": "#2e7d32"}
        rows = "".join(
            f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(e.time))}</td>"
            f"<td>{escape(e.alert)}</td><td style='color:{colors.get(e.state, '')}'>"
            f"{e.state}</td><td>{e.severity}</td><td>"
            f"{escape(', '.join(f'{k}={v}' for k, v in sorted(e.labels.items())))}</td>"
            f"<td>{'' if e.value is None else f'{e.value:.4g}'}</td></tr>" for e in self)
        return ("<table><tr><th>time</th><th>alert</th><th>state</th><th>severity</th>"
                f"<th>labels</th><th>value</th></tr>{rows}</table>")


class AlertManager:
    """Evaluates rules over a store; keeps state, history, and notifies a webhook.

    The webhook receives Alertmanager's webhook JSON (``{"status", "alerts": [...]}``)
    on every firing and resolved event; a failed POST is logged, never raised.
    """

    def __init__(self, rules: list[Rule], store: SampleStore, *, webhook: str | None = None,
                 webhook_timeout: float = 2.0):
        self.rules = list(rules)
        self.store = store
        self.webhook = webhook
        self.webhook_timeout = webhook_timeout
        self.history = AlertHistory()
        self._active: dict[tuple[str, tuple[tuple[str, str], ...]], _Active] = {}

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate every rule at ``now``; return the new events."""
        import numpy as np

        from .promql import evaluate, parse

        now = time.time() if now is None else now
        events: list[AlertEvent] = []
        for rule in self.rules:
            try:
                result = evaluate(parse(rule.expr), self.store, np.array([now]))
            except Exception as exc:
                logger.warning("rule %s failed to evaluate: %s", rule.name, exc)
                continue
            if not isinstance(result, dict):  # a scalar condition: one alert, no labels
                result = {(): result}
            hits = {tuple((k, v) for k, v in key if k != "__name__"): float(arr[0])
                    for key, arr in result.items() if not np.isnan(arr[0])}
            for key, value in hits.items():
                state = self._active.get((rule.name, key))
                if state is None:
                    state = self._active[(rule.name, key)] = _Active(now, "", value)
                state.value = value
                want = "firing" if now - state.since >= rule.for_seconds else "pending"
                if want != state.state:
                    state.state = want
                    events.append(self._event(rule, key, want, now, value))
            for (name, key), state in list(self._active.items()):
                if name == rule.name and key not in hits:
                    del self._active[(name, key)]
                    if state.state == "firing":
                        events.append(self._event(rule, key, "resolved", now, None))
        self.history.extend(events)
        if self.webhook and any(e.state != "pending" for e in events):
            self._notify([e for e in events if e.state != "pending"])
        return events

    def _event(self, rule: Rule, key: tuple[tuple[str, str], ...], state: str, now: float,
               value: float | None) -> AlertEvent:
        labels = {**dict(key), **rule.labels, "severity": rule.severity}
        logger.info("alert %s %s %s", rule.name, state, labels)
        return AlertEvent(now, rule.name, state, rule.severity, labels, value)

    def firing(self) -> list[AlertEvent]:
        """Alerts firing now (one event each, with the latest value)."""
        return self._in_state("firing")

    def pending(self) -> list[AlertEvent]:
        """Alerts whose condition holds, but not yet for the rule's ``for``."""
        return self._in_state("pending")

    def _in_state(self, state: str) -> list[AlertEvent]:
        rules = {r.name: r for r in self.rules}
        return [AlertEvent(s.since, name, state, rules[name].severity,
                           {**dict(key), **rules[name].labels}, s.value)
                for (name, key), s in self._active.items()
                if s.state == state and name in rules]

    def _notify(self, events: list[AlertEvent]) -> None:
        import httpx

        def stamp(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        alerts = [{"status": "resolved" if e.state == "resolved" else "firing",
                   "labels": {"alertname": e.alert, **e.labels},
                   "annotations": {}, "startsAt": stamp(e.time),
                   "endsAt": stamp(e.time) if e.state == "resolved" else ""}
                  for e in events]
        body = {"version": "4", "receiver": "hybridnb",
                "status": "firing" if any(a["status"] == "firing" for a in alerts)
                else "resolved", "alerts": alerts}
        try:
            httpx.post(self.webhook or "", json=body, timeout=self.webhook_timeout)
        except httpx.HTTPError as exc:
            logger.warning("alert webhook %s failed: %s", self.webhook, exc)

    def __repr__(self) -> str:
        return (f"AlertManager({len(self.rules)} rules, {len(self.firing())} firing, "
                f"{len(self.history)} events)")

    def _repr_html_(self) -> str:
        return f"<p>{escape(repr(self))}</p>" + self.history._repr_html_()
