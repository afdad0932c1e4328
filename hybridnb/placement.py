"""Where should a job run? The placement planner: pure functions, explained decisions.

:func:`plan` reads the configuration (lazily) and calls :func:`plan_on`, which does all
the work from explicit arguments and no I/O. Every site of the configuration ends up
either in :attr:`Plan.choices` (feasible, ranked) or in :attr:`Plan.rejected` with the
reasons why.

Estimates, for a candidate site:

- compute cost: ``cpu × hours × cost.cpu_hour + gpu × hours × cost.gpu_hour``;
- egress cost: for each dataset not already on the site, its size in GB (10**9 bytes,
  as clouds price it) × the ``egress_gb`` of the site the dataset lives on;
- transfer time: for each such dataset, ``size × 8 / bandwidth`` of the dataset's site's
  link to the candidate (:meth:`~hybridnb.config.Network.link_to`) plus that link's
  latency. Datasets are counted one after another: an upper bound when they come from
  different sites, and exact when they share the link;
- total: compute + egress dollars; transfer + ``hours`` hours.

>>> from hybridnb.config import load_config
>>> p = plan("train", cpu=1, hours=2, config=load_config())
>>> p.chosen.site
'local'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from html import escape
from typing import TYPE_CHECKING, Any

from .config.units import format_bytes, parse_bytes
from .errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from .config.models import Dataset, HybridConfig, Site

__all__ = [
    "POLICIES", "ROW_COLUMNS", "TIERS", "Choice", "Kind", "Plan", "Reason", "ReasonKind",
    "Rejection", "Request", "Transfer", "format_hours", "format_usd", "plan", "plan_on",
]

logger = logging.getLogger(__name__)

TIERS = ("private", "public", "edge")
POLICIES = ("private-first", "cheapest", "fastest")
#: Columns of :meth:`Plan.to_rows`, in order (the CLI table).
ROW_COLUMNS = ("rank", "site", "tier", "status", "compute", "egress", "cost", "transfer",
               "time", "notes")
GB = 10**9
_TIER_ORDER = {"private": 0, "edge": 1, "public": 2}


class Kind(str, Enum):
    """Kinds of job. Only ``serve`` considers edge sites unless asked."""

    PREPROCESS = "preprocess"
    TRAIN = "train"
    SERVE = "serve"
    NOTEBOOK = "notebook"

    def __str__(self) -> str:
        return self.value


class ReasonKind(str, Enum):
    """Why a site can be rejected."""

    CAPACITY = "capacity"
    RESIDENCY = "residency"
    BUDGET = "budget"
    DEADLINE = "deadline"
    TIER = "tier"
    POLICY = "policy"

    def __str__(self) -> str:
        return self.value


class Reason(str):
    """One reason a site was rejected: reads as text, and carries its :class:`ReasonKind`.

    It is a ``str`` so that reasons join, print and serialize as text.

    >>> r = Reason("capacity", "needs 8 CPU, site has 4")
    >>> r, r.kind.value, r.message
    ('capacity: needs 8 CPU, site has 4', 'capacity', 'needs 8 CPU, site has 4')
    """

    kind: ReasonKind
    message: str

    def __new__(cls, kind: ReasonKind | str, message: str) -> Reason:
        kind = ReasonKind(kind)
        self = super().__new__(cls, f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        # copy and pickle rebuild through __new__, which needs both parts.
        return (self.kind.value, self.message)


@dataclass(frozen=True)
class Request:
    """What a job needs. Validated and normalized on construction (:class:`UsageError`).

    ``memory`` takes bytes or a size such as ``"16GiB"``; ``hours`` and ``deadline`` are
    hours; ``budget`` is US dollars; ``tiers=None`` means every tier (edge only for
    ``serve``); ``policy=None`` means ``policies.placement``.

    >>> Request("train", cpu=8, memory="16GiB", data="digits").describe()
    'train job: 8 CPU, 0 GPU, 16.0 GiB memory, 1h, data digits'
    """

    kind: Kind
    cpu: float = 1.0
    gpu: int = 0
    memory: int = 0
    hours: float = 1.0
    data: tuple[str, ...] = ()
    deadline: float | None = None
    budget: float | None = None
    tiers: tuple[str, ...] | None = None
    policy: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("kind", _choice("kind", self.kind, [k.value for k in Kind], Kind))
        put("cpu", _number("cpu", self.cpu))
        gpu = _number("gpu", self.gpu)
        if gpu != int(gpu):
            raise UsageError(f"gpu must be a whole number, got {self.gpu!r}")
        put("gpu", int(gpu))
        try:
            put("memory", parse_bytes(self.memory))
        except ValueError as exc:
            raise UsageError(f"memory: {exc}") from None
        put("hours", _number("hours", self.hours))
        put("data", tuple(dict.fromkeys(_names(self.data))))  # a dataset counts once
        if self.deadline is not None:
            put("deadline", _number("deadline", self.deadline, positive=True))
        if self.budget is not None:
            put("budget", _number("budget", self.budget))
        if self.tiers is not None:
            tiers = tuple(dict.fromkeys(_choice("tier", t, TIERS) for t in _names(self.tiers)))
            if not tiers:
                raise UsageError(f"tiers is empty; pass some of {', '.join(TIERS)}, or None")
            put("tiers", tiers)
        if self.policy is not None:
            put("policy", _choice("policy", self.policy, POLICIES))

    def describe(self) -> str:
        """One line for people: kind, resources, hours and data."""
        text = (f"{self.kind.value} job: {self.cpu:g} CPU, {self.gpu} GPU, "
                f"{format_bytes(self.memory)} memory, {format_hours(self.hours)}")
        return text + (f", data {', '.join(self.data)}" if self.data else "")


@dataclass(frozen=True)
class Transfer:
    """Moving one dataset to a candidate site: bytes, hours and egress dollars."""

    dataset: str
    source: str
    bytes: int
    hours: float
    cost: float


@dataclass(frozen=True)
class Choice:
    """A feasible site with its estimates (US dollars, hours); rank 1 is the best."""

    rank: int
    site: str
    tier: str
    compute_cost: float
    egress_cost: float
    transfer_hours: float
    hours: float
    preemptible: bool = False
    transfers: tuple[Transfer, ...] = ()
    notes: tuple[str, ...] = ()
    total_cost: float = field(init=False)
    total_hours: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_cost", self.compute_cost + self.egress_cost)
        object.__setattr__(self, "total_hours", self.transfer_hours + self.hours)


@dataclass(frozen=True)
class Rejection:
    """A site that cannot (or may not) run the job, and every reason why."""

    site: str
    reasons: tuple[Reason, ...]
    tier: str = ""

    @property
    def kinds(self) -> tuple[ReasonKind, ...]:
        return tuple(r.kind for r in self.reasons)


@dataclass(frozen=True)
class Plan:
    """Ranked feasible sites, rejected sites with reasons, and notes."""

    request: Request
    policy: str
    choices: tuple[Choice, ...]
    rejected: tuple[Rejection, ...]
    notes: tuple[str, ...] = ()

    @property
    def chosen(self) -> Choice | None:
        """The best feasible site, or None when no site can run the job."""
        return self.choices[0] if self.choices else None

    def raise_if_empty(self) -> Plan:
        """Return the plan, or raise :class:`UsageError` listing every site and its reasons."""
        if self.choices:
            return self
        if not self.rejected:
            raise UsageError("no sites are configured; declare one under 'sites:' in "
                             "hybridnb.yaml")
        lines = [f"  {r.site} ({r.tier}): {'; '.join(r.reasons)}" for r in self.rejected]
        raise UsageError(f"no site can run this {self.request.describe()} "
                         f"(policy {self.policy}):\n" + "\n".join(lines)
                         + "\nAsk for less, widen tiers, raise the budget or deadline, "
                           "or add capacity")

    def to_rows(self) -> list[dict[str, str]]:
        """Formatted rows for a table (keys :data:`ROW_COLUMNS`): choices, then rejections."""
        rows = [{"rank": str(c.rank), "site": c.site, "tier": c.tier,
                 "status": "chosen" if c.rank == 1 else "feasible",
                 "compute": format_usd(c.compute_cost), "egress": format_usd(c.egress_cost),
                 "cost": format_usd(c.total_cost), "transfer": format_hours(c.transfer_hours),
                 "time": format_hours(c.total_hours), "notes": "; ".join(c.notes)}
                for c in self.choices]
        rows += [{**dict.fromkeys(ROW_COLUMNS, ""), "site": r.site, "tier": r.tier,
                  "status": "rejected", "notes": "; ".join(r.reasons)} for r in self.rejected]
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: numbers unformatted, enums as their values."""
        request = asdict(self.request)
        request["kind"] = self.request.kind.value
        return {
            "request": request,
            "policy": self.policy,
            "chosen": self.chosen.site if self.chosen else None,
            "choices": [asdict(c) for c in self.choices],
            "rejected": [{"site": r.site, "tier": r.tier,
                          "reasons": [{"kind": x.kind.value, "message": x.message}
                                      for x in r.reasons]} for r in self.rejected],
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        c = self.chosen
        head = (f"{c.site} {format_usd(c.total_cost)} {format_hours(c.total_hours)}"
                if c else "no site")
        return (f"Plan({self.request.kind.value} → {head}; policy {self.policy}; "
                f"feasible: {', '.join(x.site for x in self.choices) or '-'}; "
                f"rejected: {', '.join(r.site for r in self.rejected) or '-'})")

    __str__ = __repr__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("rank", "site", "tier", "compute $",
                                                  "egress $", "total $", "transfer",
                                                  "total time", "notes"))
        body = []
        for c in self.choices:
            style = ' style="font-weight: bold"' if c.rank == 1 else ""
            cells = (c.rank, c.site, c.tier, format_usd(c.compute_cost),
                     format_usd(c.egress_cost), format_usd(c.total_cost),
                     format_hours(c.transfer_hours), format_hours(c.total_hours),
                     "; ".join(c.notes))
            body.append(f"<tr{style}>" + "".join(f"<td>{escape(str(x))}</td>" for x in cells)
                        + "</tr>")
        for r in self.rejected:
            reasons = "<br>".join(escape(x) for x in r.reasons)
            body.append(f'<tr style="color: #888"><td>—</td><td>{escape(r.site)}</td>'
                        f'<td>{escape(r.tier)}</td><td colspan="6">rejected: {reasons}</td></tr>')
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (f"<table><caption>hybridnb plan: {escape(self.request.describe())} "
                f"(policy {escape(self.policy)})</caption><tr>{head}</tr>{''.join(body)}"
                f"</table>" + (f"<ul>{notes}</ul>" if notes else ""))


def plan(kind: str, *, cpu: float = 1, gpu: int = 0, memory: int | str = 0,
         hours: float = 1.0, data: Iterable[str] | str = (), deadline: float | None = None,
         budget: float | None = None, tiers: Iterable[str] | str | None = None,
         policy: str | None = None, config: HybridConfig | None = None) -> Plan:
    """Where should a job run? Every configured site, ranked or rejected with reasons.

    Parameters
    ----------
    kind:
        ``preprocess``, ``train``, ``serve`` or ``notebook``.
    cpu, gpu, memory:
        What the job needs at once; ``memory`` in bytes or as ``"16GiB"``.
    hours:
        How long the job computes, without moving data.
    data:
        Names of datasets from the configuration that the job reads.
    deadline, budget:
        Hours from now and US dollars; sites over either are rejected. The budget is
        also capped by ``policies.budget.per_job``.
    tiers:
        Tiers to consider; None means private and public (and edge for ``serve``).
    policy:
        ``private-first``, ``cheapest`` or ``fastest``; None means ``policies.placement``.
    config:
        None reads it with :func:`hybridnb.config.load_config`.

    Raises
    ------
    UsageError
        For a bad argument or an unknown dataset. An empty plan is not an error: call
        :meth:`Plan.raise_if_empty` for one.

    Examples
    --------
    >>> from hybridnb.config import load_config
    >>> config = load_config(overrides={"sites.local.cost.cpu_hour": 0.5})
    >>> p = plan("preprocess", cpu=1, hours=3, config=config)
    >>> p.chosen.site, p.chosen.total_cost
    ('local', 1.5)
    >>> plan("tran", config=config)
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: unknown kind 'tran' (did you mean 'train'?); valid kinds: preprocess, train, serve, notebook
    """  # noqa: E501
    request = Request(kind, cpu=cpu, gpu=gpu, memory=memory, hours=hours,  # type: ignore[arg-type]
                      data=data, deadline=deadline, budget=budget,  # type: ignore[arg-type]
                      tiers=tiers, policy=policy)  # type: ignore[arg-type]
    if config is None:
        from .config import load_config

        config = load_config()
    return plan_on(config, request)


def plan_on(config: HybridConfig, request: Request) -> Plan:
    """The planner proper: :func:`plan` with everything explicit, and no I/O.

    >>> from hybridnb.config import load_config
    >>> config = load_config(overrides={"sites.local.capacity.gpu": 0})
    >>> p = plan_on(config, Request("train", gpu=2))
    >>> p.chosen, list(p.rejected[0].reasons)
    (None, ['capacity: needs 2 GPU, site has 0'])
    """
    policy = request.policy or config.policies.placement
    datasets = [config.dataset(name) for name in request.data]
    notes = [f"dataset '{d.name}' has no size: counted as 0 bytes (set datasets.{d.name}.size "
             "for transfer and egress estimates)" for d in datasets if d.size is None]
    sites = list(config.sites.values())
    estimates = {s.name: _estimate(config, s, request, datasets) for s in sites}
    reasons = {s.name: _reasons(config, s, request, datasets, estimates[s.name])
               for s in sites}
    policy_reason, policy_note = _policy(policy, config.policies.burst, sites, reasons)
    for s in sites:
        if policy_reason and s.tier == "public" and not reasons[s.name]:
            reasons[s.name].append(policy_reason)
    feasible = sorted((estimates[s.name] for s in sites if not reasons[s.name]),
                      key=lambda c: _rank_key(policy, c))  # stable: config order breaks ties
    choices = tuple(replace(c, rank=i) for i, c in enumerate(feasible, 1))
    if policy_note and choices and choices[0].tier == "public":
        notes.append(policy_note)
    notes += [f"site '{c.site}' is preemptible: the job may be interrupted; it ranks after "
              "equal sites that are not" for c in choices if c.preemptible]
    rejected = tuple(Rejection(s.name, tuple(reasons[s.name]), s.tier)
                     for s in sites if reasons[s.name])
    result = Plan(request, policy, choices, rejected, tuple(notes))
    logger.debug("%r", result)
    return result


def _estimate(config: HybridConfig, site: Site, request: Request,
              datasets: list[Dataset]) -> Choice:
    transfers = []
    for d in datasets:
        if d.site == site.name:
            continue  # already there: no egress, no transfer
        size = d.size or 0
        source = config.site(d.site)
        link = source.network.link_to(site.name)
        seconds = size * 8 / (link.bandwidth_mbps * 1e6) + link.latency_ms / 1000
        transfers.append(Transfer(d.name, source.name, size, seconds / 3600,
                                  size / GB * source.cost.egress_gb))
    notes = ["preemptible: may be interrupted; checkpoint"] if site.preemptible else []
    notes += [f"moves {t.dataset} ({format_bytes(t.bytes)}) from {t.source}" for t in transfers]
    return Choice(
        rank=0, site=site.name, tier=site.tier,
        compute_cost=request.hours * (request.cpu * site.cost.cpu_hour
                                      + request.gpu * site.cost.gpu_hour),
        egress_cost=sum(t.cost for t in transfers),
        transfer_hours=sum(t.hours for t in transfers), hours=request.hours,
        preemptible=site.preemptible, transfers=tuple(transfers), notes=tuple(notes))


def _reasons(config: HybridConfig, site: Site, request: Request, datasets: list[Dataset],
             est: Choice) -> list[Reason]:
    out = []
    if request.tiers is not None and site.tier not in request.tiers:
        out.append(Reason("tier", f"tier {site.tier} not in tiers={list(request.tiers)}"))
    elif request.tiers is None and site.tier == "edge" and request.kind is not Kind.SERVE:
        out.append(Reason("tier", "edge sites serve; pass tiers=['edge'] to use one"))
    cap = site.capacity
    if request.cpu > cap.cpu:
        out.append(Reason("capacity", f"needs {request.cpu:g} CPU, site has {cap.cpu:g}"))
    if request.gpu > cap.gpu:
        out.append(Reason("capacity", f"needs {request.gpu} GPU, site has {cap.gpu}"))
    if request.memory > cap.memory:
        out.append(Reason("capacity", f"needs {format_bytes(request.memory)} memory, site has "
                                      f"{format_bytes(cap.memory)}"))
    for d in datasets:
        if not site.allows(d.classification):
            out.append(Reason("residency", f"dataset '{d.name}' is {d.classification} and site "
                                           f"'{site.name}' may hold only "
                                           f"{', '.join(site.classifications) or 'nothing'}"))
    limits = [(request.budget, "the budget argument"),
              (config.policies.budget.per_job, "policies.budget.per_job")]
    set_limits = [(x, where) for x, where in limits if x is not None]
    if set_limits:
        limit, where = min(set_limits, key=lambda pair: pair[0])
        if est.total_cost > limit:
            out.append(Reason("budget", f"costs {format_usd(est.total_cost)}, over the "
                                        f"{format_usd(limit)} budget ({where})"))
    if request.deadline is not None and est.total_hours > request.deadline:
        out.append(Reason("deadline", f"takes {format_hours(est.total_hours)}, over the "
                                      f"deadline of {format_hours(request.deadline)}"))
    return out


def _policy(policy: str, burst: bool, sites: list[Site],
            reasons: dict[str, list[Reason]]) -> tuple[Reason | None, str]:
    """The reason to reject otherwise feasible public sites, and a note when bursting."""
    if policy != "private-first":
        return None, ""
    private = [s.name for s in sites if s.tier == "private" and not reasons[s.name]]
    if private:
        fits = ", ".join(private[:3]) + (", …" if len(private) > 3 else "")
        return Reason("policy", f"private-first and a private site fits ({fits})"), ""
    if not burst:
        return Reason("policy", "private-first, no private site fits, and bursting to public "
                                "is off (policies.burst)"), ""
    return None, "no private site fits: bursting to public (policies.burst)"


def _rank_key(policy: str, c: Choice) -> tuple[float, ...]:
    # Preemptible sites lose ties only: a small penalty that never outweighs cost or time.
    if policy == "cheapest":
        return (c.total_cost, c.total_hours, c.preemptible)
    if policy == "fastest":
        return (c.total_hours, c.total_cost, c.preemptible)
    return (_TIER_ORDER[c.tier], c.total_cost, c.total_hours, c.preemptible)


def format_hours(hours: float) -> str:
    """Hours for people.

    >>> format_hours(3.5), format_hours(80.02 / 3600), format_hours(0), format_hours(50)
    ('3h 30m', '1m 20s', '0s', '2d 2h')
    """
    if math.isinf(hours):
        return "∞"
    seconds = round(hours * 3600)
    if seconds < 60:
        return f"{seconds}s" if seconds or hours == 0 else "<1s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    h, m = divmod(round(hours * 60), 60)
    if h < 48:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(round(hours), 24)
    return f"{d}d {h}h" if h else f"{d}d"


def format_usd(usd: float) -> str:
    """US dollars for people.

    >>> format_usd(0), format_usd(0.001), format_usd(1234.5)
    ('$0.00', '<$0.01', '$1,234.50')
    """
    return "<$0.01" if 0 < usd < 0.005 else f"${usd:,.2f}"


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise UsageError(f"{name} must be {'> 0' if positive else '≥ 0'}, got {value!r}")
    return float(value)


def _names(value: Iterable[str] | str) -> list[str]:
    # A lone string is one name, not a sequence of one-letter names.
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _choice(what: str, value: Any, valid: Iterable[str], cast: Any = str) -> Any:
    valid = list(valid)
    if str(value) not in valid:
        plural = "policies" if what == "policy" else f"{what}s"
        raise UsageError(f"unknown {what} {str(value)!r}{did_you_mean(str(value), valid)}; "
                         f"valid {plural}: {', '.join(valid)}")
    return cast(str(value))
