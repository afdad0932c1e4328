"""Check Helm values against the zero-to-jupyterhub chart's published values schema.

The schema and the chart's default values are kept as data in ``schemas/`` (chart
:data:`Z2JH_CHART_VERSION`, from the chart's ``jupyterhub/values.schema.yaml`` and
``jupyterhub/values.yaml``, BSD-3-Clause, Project Jupyter Contributors). Helm validates
the *merged* values (the chart's defaults with the user's on top), so this does the
same: maps merge key by key, anything else replaces, ``null`` deletes.

>>> check_values({"singleuser": {"profileList": []}})
>>> check_values({"singleuser": {"profileLst": []}})   # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hybridnb.hub.schema.ValuesError: z2jh-values.yaml does not fit the ... values schema:
  $.singleuser: Additional properties are not allowed ('profileLst' was unexpected)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UsageError

Z2JH_CHART_VERSION = "4.4.0"
SCHEMA_DIR = Path(__file__).with_name("schemas")


class ValuesError(UsageError):
    """Values the chart would refuse; ``problems`` lists ``(json path, message)``."""

    def __init__(self, problems: list[tuple[str, str]], name: str = "z2jh-values.yaml"):
        self.problems = problems
        lines = [f"{name} does not fit the zero-to-jupyterhub {Z2JH_CHART_VERSION} values "
                 "schema:"] + [f"  {path}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    import yaml

    path = SCHEMA_DIR / f"z2jh-{Z2JH_CHART_VERSION}.values.schema.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    import yaml

    path = SCHEMA_DIR / f"z2jh-{Z2JH_CHART_VERSION}.values.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merge_values(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of ``over`` onto ``base``.

    >>> merge_values({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 3}})
    {'a': {'b': 1, 'd': 3}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem the chart's schema finds in the merged values, as (path, message)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(_schema())
    merged = merge_values(_defaults(), values)
    out = []
    for err in sorted(validator.iter_errors(merged), key=lambda e: list(map(str, e.path))):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
        out.append((path, err.message))
    return out


def check_values(values: Mapping[str, Any]) -> None:
    """Raise :class:`ValuesError` listing every problem, else return ``None``."""
    problems = values_problems(values)
    if problems:
        raise ValuesError(problems)
