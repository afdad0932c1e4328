"""What validation reports: :class:`ManifestProblem` (a JSON path and a message) and
:class:`ManifestError`; and jsonschema's errors turned into problems.

>>> str(ManifestProblem("Secret/s", json_path(["spec", "ports", 0]), "bad"))
'Secret/s: $.spec.ports[0]: bad'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import OperationError, UsageError, did_you_mean


@dataclass(frozen=True, order=True)
class ManifestProblem:
    """One thing wrong with a manifest.

    Attributes
    ----------
    resource:
        ``Kind/name`` of the object.
    path:
        JSON path of the offending value, e.g. ``$.spec.worker.replicas``.
    message:
        What is wrong.
    """

    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.path}: {self.message}"


class ManifestError(UsageError):
    """Manifests are invalid; ``problems`` lists every problem found.

    >>> print(ManifestError([ManifestProblem("Secret/x", "$.type", "bad")]))
    invalid Kubernetes manifest (1 problem):
      Secret/x: $.type: bad
    """

    def __init__(self, problems: Iterable[ManifestProblem]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"invalid Kubernetes manifest ({n} problem{'s' if n != 1 else ''}):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def json_path(parts: Iterable[Any]) -> str:
    """The JSON path of a value from the keys and indexes leading to it.

    >>> json_path(["metadata", "labels", "app.kubernetes.io/name"])
    '$.metadata.labels["app.kubernetes.io/name"]'
    """
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def short(message: str, limit: int = 240) -> str:
    """``message`` cut to ``limit`` characters."""
    # jsonschema quotes whole instances; a Pod spec in a message helps nobody.
    return message if len(message) <= limit else message[:limit - 1] + "…"


def schema_problems(validator: Any, obj: Mapping[str, Any], resource: str
                    ) -> list[ManifestProblem]:
    """Every error of a jsonschema ``validator`` on ``obj``, as problems of ``resource``.

    An unknown field names the field (with a guess at the one meant), a missing required
    field its own path; an ``anyOf``/``oneOf`` reports its closest branch.
    """
    from jsonschema.exceptions import best_match

    problems: list[ManifestProblem] = []
    for error in validator.iter_errors(obj):
        if error.context:  # anyOf/oneOf: report the branch that came closest
            error = best_match(error.context)
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    problems.append(ManifestProblem(
                        resource, json_path([*path, key]),
                        f"unknown field {key!r}{did_you_mean(key, known)}"))
        elif error.validator == "required":
            for key in error.validator_value:
                if isinstance(error.instance, Mapping) and key not in error.instance:
                    problems.append(ManifestProblem(resource, json_path([*path, key]),
                                                    "required field is missing"))
        else:
            problems.append(ManifestProblem(resource, json_path(path), short(error.message)))
    return problems


def import_jsonschema() -> Any:
    """The ``jsonschema`` module, or an :class:`OperationError` saying how to install it."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema comes with JupyterLab
        raise OperationError("validating Kubernetes manifests needs jsonschema: "
                             "pip install jsonschema") from None
    return jsonschema
