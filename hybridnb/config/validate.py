"""Validate merged configuration into a :class:`HybridConfig`, or explain every problem.

Pydantic checks types and ranges; :func:`cross_checks` checks what one key cannot know
alone (a dataset on an unknown site, residency a site does not allow, a backend without
its options). Each problem names the layer and line the offending value came from.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import did_you_mean
from .backends import backend_names
from .layers import Origin
from .models import BUILTIN_BACKENDS, Dataset, HybridConfig, Policies, Site, is_loopback
from .problems import ConfigError, ConfigProblem
from .teams import cross_checks as team_checks
from .yamlsource import KeyPath

SITE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# What the user should write, by pydantic error type.
_EXPECTED = {
    "float_parsing": "a number", "float_type": "a number", "int_parsing": "a whole number",
    "int_type": "a whole number", "int_from_float": "a whole number",
    "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "text",
    "dict_type": "a mapping (indented 'key: value' lines)",
    "model_type": "a mapping (indented 'key: value' lines)",
    "model_attributes_type": "a mapping (indented 'key: value' lines)",
    "list_type": "a list ('[a, b]' or '- a' lines)",
}
_OPTIONS_EXAMPLE = {
    "scheduler": "scheduler: {address: tls://10.0.0.5:8786}",
    "ssh": "ssh: {hosts: [10.0.0.11, 10.0.0.12], user: ml}",
    "gateway": "gateway: {address: http://HUB/services/dask-gateway}",
}


def validate(data: Mapping[str, Any], origins: Mapping[KeyPath, Origin],
             layers: list[str] | None = None) -> HybridConfig:
    """Validate merged ``data``; raise :class:`ConfigError` listing every problem."""
    where = _locator(origins)
    problems: list[ConfigProblem] = []
    try:
        config = HybridConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_from_pydantic(err, where) for err in exc.errors()]
    problems += cross_checks(data, where)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.source, p.line or 0, p.path)))
    config._sources = {".".join(p): str(o) for p, o in origins.items()}
    config._layers = list(layers or [])
    return config


def _locator(origins: Mapping[KeyPath, Origin]) -> Callable[..., ConfigProblem]:
    """A factory of problems located at the origin of a key path (or its nearest parent)."""

    def problem(path: KeyPath, message: str, fix: str = "",
                anchor: KeyPath | None = None) -> ConfigProblem:
        # ``anchor``: the key whose line to show when ``path`` itself is absent.
        parts = tuple(str(p) for p in path)
        probe = parts if anchor is None or parts in origins else tuple(anchor)
        while probe and probe not in origins:
            probe = probe[:-1]
        origin = origins.get(probe, Origin("default"))
        return ConfigProblem(origin.label, ".".join(parts), message, fix, origin.line)

    return problem


def _from_pydantic(err: Any, problem: Callable[..., ConfigProblem]) -> ConfigProblem:
    loc = tuple(str(p) for p in err["loc"])
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    key = loc[-1] if loc else ""
    parent = _model_at(loc[:-1])
    if kind == "missing":
        desc = _description(parent, key)
        return problem(loc, f"required key '{key}' is missing",
                       f"add '{key}:'" + (f" ({desc})" if desc else ""))
    if kind == "extra_forbidden":
        valid = sorted(parent.model_fields) if parent else []
        return problem(loc, f"unknown key '{key}'{did_you_mean(key, valid)}",
                       "remove it or correct its spelling"
                       + (f"; valid keys here: {', '.join(valid)}" if valid else ""))
    if kind == "literal_error":
        return problem(loc, f"invalid value {given!r}", f"use one of {ctx.get('expected')}")
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        op = "≥" if kind == "greater_than_equal" else ">"
        return problem(loc, f"must be {op} {bound:g}, got {given!r}", f"use a value {op} {bound:g}")
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return problem(loc, f"must be ≤ {bound:g}, got {given!r}", f"use a value ≤ {bound:g}")
    if kind == "too_short":
        return problem(loc, f"needs at least {ctx.get('min_length', 1)} item(s)",
                       "add the missing items")
    if kind == "string_pattern_mismatch":
        desc = _description(parent, key)
        return problem(loc, f"invalid value {given!r}",
                       desc or f"match the pattern {ctx.get('pattern')}")
    if kind in _EXPECTED:
        return problem(loc, f"expected {_EXPECTED[kind]}, got {given!r}",
                       f"write {_EXPECTED[kind]}")
    message = str(err["msg"]).removeprefix("Value error, ")
    desc = _description(parent, key)
    return problem(loc, message, f"write {desc[0].lower()}{desc[1:]}" if desc else "")


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (for valid keys and descriptions)."""
    current: Any = HybridConfig
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, Mapping):
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` → ``X``; ``Annotated[X, ...]`` → ``X``."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _description(model: type[BaseModel] | None, key: str) -> str:
    field = model.model_fields.get(key) if model else None
    return (field.description or "") if field else ""


def cross_checks(data: Mapping[str, Any], problem: Callable[..., ConfigProblem]
                 ) -> list[ConfigProblem]:
    """Problems that span keys: names, backends, residency and references between sites.

    Works on the merged data before typing, defensively, so that one run reports these
    together with the type errors instead of after they are fixed.
    """
    out: list[ConfigProblem] = []
    sites = _mapping(data.get("sites"))
    datasets = _mapping(data.get("datasets"))
    policies = _mapping(data.get("policies"))
    known_classes = [str(c) for c in _sequence(policies.get("classifications"))] or list(
        Policies.model_validate({}).classifications)
    backends = backend_names()
    for name, raw in sites.items():
        site = _mapping(raw)
        at = ("sites", name)
        if not SITE_NAME.match(name):
            out.append(problem(at, f"invalid site name '{name}'",
                               "use lowercase letters, digits and '-' (at most 63), "
                               "starting and ending with a letter or digit"))
        if site.get("name") not in (None, name):
            out.append(problem((*at, "name"), f"name {site['name']!r} differs from its key "
                               f"'{name}'", "remove 'name:'; the key is the site's name"))
        backend = site.get("backend", Site.model_fields["backend"].default)
        if backend not in backends:
            out.append(problem((*at, "backend"),
                               f"unknown backend {backend!r}{did_you_mean(backend, backends)}",
                               f"use one of {', '.join(backends)}, or install the plug-in "
                               "that provides it"))
        elif backend in _OPTIONS_EXAMPLE and site.get(backend) is None:
            out.append(problem((*at, backend), f"backend '{backend}' needs its options",
                               f"add '{_OPTIONS_EXAMPLE[backend]}' under sites.{name}",
                               anchor=(*at, "backend")))
        for other in BUILTIN_BACKENDS:
            if other != backend and site.get(other) is not None:
                out.append(problem((*at, other),
                                   f"has '{other}' options but its backend is {backend!r}",
                                   f"remove the '{other}' block or set 'backend: {other}'"))
        if site.get("options") and backend in BUILTIN_BACKENDS:
            out.append(problem((*at, "options"),
                               f"'options' is for plug-in backends, not '{backend}'",
                               f"put them under '{backend}:' instead"))
        out += _edge_problems(site, at, problem)
        for i, cls in enumerate(_sequence(site.get("classifications"))):
            if cls not in known_classes:
                out.append(problem((*at, "classifications", i),
                                   f"unknown classification {cls!r}"
                                   f"{did_you_mean(cls, known_classes)}",
                                   f"use one of {', '.join(known_classes)} or add it to "
                                   "policies.classifications"))
        for peer in _mapping(_mapping(site.get("network")).get("to")):
            if peer not in sites:
                out.append(problem((*at, "network", "to", peer),
                                   f"link to unknown site '{peer}'{did_you_mean(peer, sites)}",
                                   f"use one of the configured sites: {', '.join(sites)}"))
    default_class = Dataset.model_fields["classification"].default
    for name, raw in datasets.items():
        entry = _mapping(raw)
        at = ("datasets", name)
        if entry.get("name") not in (None, name):
            out.append(problem((*at, "name"), f"name {entry['name']!r} differs from its key "
                               f"'{name}'", "remove 'name:'; the key is the dataset's name"))
        cls = entry.get("classification", default_class)
        if cls not in known_classes:
            out.append(problem((*at, "classification"),
                               f"unknown classification {cls!r}"
                               f"{did_you_mean(cls, known_classes)}",
                               f"use one of {', '.join(known_classes)}"))
        where = entry.get("site")
        if not isinstance(where, str):
            continue  # missing or mistyped: the type check reports it
        if where not in sites:
            out.append(problem((*at, "site"),
                               f"dataset '{name}' is on unknown site '{where}'"
                               f"{did_you_mean(where, sites)}",
                               f"use one of the configured sites: {', '.join(sites)}"))
            continue
        allowed = [str(c) for c in _sequence(_mapping(sites[where]).get(
            "classifications",
            Site.model_fields["classifications"].get_default(call_default_factory=True)))]
        if cls in known_classes and cls not in allowed:
            out.append(problem((*at, "classification"),
                               f"dataset '{name}' is classified '{cls}' but site '{where}' "
                               f"may hold only {', '.join(allowed) or 'nothing'}",
                               f"place the dataset on a site that allows '{cls}', or add it to "
                               f"sites.{where}.classifications if your policy permits"))
    sched = policies.get("scheduler_site")
    if sched is not None and sched not in sites:
        out.append(problem(("policies", "scheduler_site"),
                           f"unknown site '{sched}'{did_you_mean(sched, sites)}",
                           f"use one of the configured sites: {', '.join(sites)}"))
    out += team_checks(data, problem, known_classes)
    return out


def _edge_problems(site: Mapping[str, Any], at: KeyPath,
                   problem: Callable[..., ConfigProblem]) -> list[ConfigProblem]:
    """An ``edge`` block belongs to an edge site, and pins its agent's certificate beyond
    loopback (the agent's token must not cross a network in clear)."""
    out: list[ConfigProblem] = []
    edge = site.get("edge")
    if edge is None:
        return out
    tier = site.get("tier", Site.model_fields["tier"].default)
    if tier != "edge":
        out.append(problem((*at, "edge"), f"has 'edge' options but its tier is {tier!r}",
                           "set 'tier: edge' or remove the 'edge' block"))
    agent = _mapping(_mapping(edge).get("agent"))
    address = agent.get("address")
    if isinstance(address, str) and agent.get("cert") is None and not is_loopback(address):
        out.append(problem((*at, "edge", "agent", "cert"),
                           f"the agent at {address} is beyond loopback but no certificate "
                           "is pinned: the agent's token would cross the network in clear",
                           "add 'cert: PATH' (the agent's certificate, written by "
                           "'hybridnb edge init')", anchor=(*at, "edge", "agent", "address")))
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []
