"""The wire models of the server extension: requests, answers and errors.

Shapes shared with the rest of hybridnb are the same classes, not copies: a job is
:class:`hybridnb.notebooks.jobs.Job` (what ``hybridnb jobs list --json`` prints), a
notebook's parameters are :class:`~hybridnb.notebooks.jobs.NotebookInfo`'s, and every
resource carries the fields of its :class:`hybridnb.state.Record` (``id``, ``name``,
``site``, ``status``, ``created_at``...) under the same names.

``python -m hybridnb.jupyter.models`` prints the JSON schema of every model, for the
TypeScript side to check its mirror against.

>>> ClusterCreate(site="local", workers=2).workers
2
>>> ClusterPatch(workers=-1)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for ClusterPatch
...
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..notebooks.jobs import Job, JobStatus, NotebookInfo, Parameter
from ..state import Status

__all__ = [
    "Alert", "AlertList", "Capacity", "Cluster", "ClusterCreate", "ClusterList",
    "ClusterPatch", "Cost", "Endpoint", "EndpointList", "EndpointPatch", "ErrorBody", "Job",
    "JobCreate", "JobDetail", "JobList", "JobStatus", "MetricSeries", "MetricsAnswer",
    "NotebookInfo", "Parameter", "PlanAnswer", "PlanRanked", "PlanRejected", "PlanRequest",
    "Run", "RunList", "Site", "SiteList", "Summary",
]

#: Cluster names become file names (the keeper's log): keep them plain.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class _Request(BaseModel):
    # A misspelled key is an error naming it, never silently ignored.
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what is wrong, and the request field it is about."""

    error: str
    field: str | None = None


# -- sites and plans ---------------------------------------------------------------------


class Capacity(BaseModel):
    cpu: float
    memory: int = Field(description="Bytes")
    gpu: int = 0
    gpu_type: str | None = None


class Cost(BaseModel):
    cpu_hour: float = 0.0
    gpu_hour: float = 0.0
    egress_gb: float = 0.0


class Site(BaseModel):
    """A configured site (``hybridnb sites list``)."""

    name: str
    tier: str
    backend: str
    capacity: Capacity
    classifications: list[str]
    cost: Cost


class SiteList(BaseModel):
    sites: list[Site]


class PlanRequest(_Request):
    """What a job needs (``hybridnb plan``)."""

    kind: str = "notebook"
    cpu: float = Field(1.0, ge=0)
    gpu: int = Field(0, ge=0)
    memory: int | str = Field(0, description="Bytes, or a size such as '16GiB'")
    hours: float = Field(1.0, ge=0)
    data: list[str] = Field(default_factory=list, description="Configured dataset names")
    budget: float | None = Field(None, ge=0)
    deadline: float | None = Field(None, gt=0)
    tiers: list[str] | None = None


class PlanRanked(BaseModel):
    site: str
    tier: str
    rank: int
    score: float = Field(description="The estimate the policy ranks by first: US dollars "
                         "(cheapest) or hours (fastest); private-first ranks by tier, then cost")
    cost_usd: float
    hours: float
    reasons: list[str] = Field(description="Notes on this choice (data moved, preemptible)")


class PlanRejected(BaseModel):
    site: str
    tier: str
    reasons: list[str] = Field(description="'kind: message' for each rule the site fails")
    kinds: list[str] = Field(description="The reasons' kinds: capacity, residency, …")


class PlanAnswer(BaseModel):
    chosen: str | None
    policy: str
    ranked: list[PlanRanked]
    rejected: list[PlanRejected]
    explanation: str


# -- clusters ------------------------------------------------------------------------------


class Adapt(_Request):
    minimum: int = Field(0, ge=0)
    maximum: int = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> Adapt:
        if self.maximum < self.minimum:
            raise ValueError(f"maximum ({self.maximum}) is below minimum ({self.minimum})")
        return self


class ClusterCreate(_Request):
    site: str
    name: str | None = None
    workers: int | None = Field(None, ge=0)
    threads: int | None = Field(None, ge=1)
    memory: str | None = Field(None, description="Per worker, e.g. '2GiB'")
    adapt: Adapt | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 63), starting "
                             "with a letter or digit")
        return value


class ClusterPatch(_Request):
    """A new desired size: exactly one of ``workers`` or ``adapt``."""

    workers: int | None = Field(None, ge=0)
    adapt: Adapt | None = None

    @model_validator(mode="after")
    def _one(self) -> ClusterPatch:
        if (self.workers is None) == (self.adapt is None):
            raise ValueError("give exactly one of workers or adapt")
        return self


class Cluster(BaseModel):
    """A Dask cluster from the state store, wherever it was started."""

    id: str
    name: str
    site: str
    backend: str | None
    status: Status
    started_from: str = Field(description="sidebar, cli (both kept by a keeper process), or "
                              "python (a kernel or script)")
    controllable: bool = Field(description="Whether scale/adapt/stop work from here (a "
                               "keeper runs it)")
    host: str
    owner: str
    workers: int | None = None
    threads: int | None = None
    memory_bytes: int | None = None
    scheduler_address: str | None = None
    dashboard: str | None = Field(None, description="The proxied dashboard path (under the "
                                  "server's base_url), or null")
    desired: dict[str, Any] | None = None
    applied: dict[str, Any] | None = None
    error: str | None = None
    created_at: float


class ClusterList(BaseModel):
    clusters: list[Cluster]


# -- runs and endpoints ----------------------------------------------------------------------


class Run(BaseModel):
    """A training run with its latest metrics (from its metrics file)."""

    id: str
    name: str
    site: str
    status: Status
    launcher: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="epoch, step, loss, "
                                      "accuracy, samples_per_second, step_seconds, lr")
    run_dir: str | None = None
    error: str | None = None
    created_at: float


class RunList(BaseModel):
    runs: list[Run]


class Endpoint(BaseModel):
    """A deployed model: replicas, versions, latency from its own /metrics."""

    id: str
    name: str
    site: str
    status: Status
    url: str | None
    replicas: int | None = Field(None, description="Stable replicas wanted")
    canary_replicas: int = 0
    versions: list[str] = Field(default_factory=list, description="Bundle names: stable, "
                                "then canary")
    canary_percent: float = 0.0
    p50_ms: float | None = Field(None, description="Since the endpoint started")
    p99_ms: float | None = None
    requests: float | None = None
    desired: dict[str, Any] | None = None
    applied: dict[str, Any] | None = None
    controllable: bool = Field(description="Whether an owner that reconciles runs it")
    error: str | None = None
    created_at: float


class EndpointList(BaseModel):
    endpoints: list[Endpoint]


class EndpointPatch(_Request):
    replicas: int | None = Field(None, ge=1)
    canary_percent: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _some(self) -> EndpointPatch:
        if self.replicas is None and self.canary_percent is None:
            raise ValueError("give replicas or canary_percent")
        return self


# -- jobs ----------------------------------------------------------------------------------


class JobCreate(_Request):
    notebook: str = Field(description="Path relative to the server's root directory")
    parameters: dict[str, Any] = Field(default_factory=dict)
    site: str | None = None
    cluster: str | None = None
    timeout: float | None = Field(None, gt=0)


class JobDetail(Job):
    log_tail: str = ""


class JobList(BaseModel):
    jobs: list[Job]


# -- monitoring ----------------------------------------------------------------------------


class Alert(BaseModel):
    name: str
    state: str = Field(description="firing, pending or inactive")
    severity: str
    value: float | None = None
    threshold: str = Field(description="The rule's expression")
    since: float | None = None
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class AlertList(BaseModel):
    alerts: list[Alert]


class MetricSeries(BaseModel):
    name: str
    labels: dict[str, str]
    points: list[tuple[float, float]]


class MetricsAnswer(BaseModel):
    series: list[MetricSeries]


class Summary(BaseModel):
    clusters: int
    endpoints: int
    runs: int
    jobs_running: int
    jobs_queued: int
    alerts_firing: int


def schemas() -> dict[str, Any]:
    """The JSON schema of every wire model, by name."""
    out: dict[str, Any] = {}
    for name in sorted(__all__):
        obj = globals()[name]
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            out[name] = obj.model_json_schema()
    return out


if __name__ == "__main__":
    print(json.dumps(schemas(), indent=2, sort_keys=True))
