"""Core Kubernetes kinds (``Deployment``, ``Service``, ``Secret``, ``Job``, ``Ingress``,
…): validators from the official JSON schemas that kubernetes-validate ships, in their
*strict* variant so unknown fields are errors.

>>> is_core_group("apps"), is_core_group("networking.k8s.io"), is_core_group("kubeflow.org")
(True, True, False)
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from ..errors import OperationError
from .problems import import_jsonschema

#: Kubernetes version whose core schemas are used: the oldest that every supported
#: kubernetes-validate (>=1.30) ships, so results do not depend on the installed release.
#: Manifests that use only stable APIs valid for 1.30 are valid for later versions.
KUBERNETES_VERSION = "1.30"


def is_core_group(group: str) -> bool:
    """Whether ``group`` is one of Kubernetes' own API groups."""
    # "" (v1), apps, batch, autoscaling, policy, and *.k8s.io (networking.k8s.io, …)
    return "." not in group or group.endswith(".k8s.io")


@functools.lru_cache(maxsize=4)
def _core_schemas(version: str) -> tuple[Path, Any]:
    """The strict schema directory of Kubernetes ``version``, and its ``$ref`` registry."""
    try:
        from importlib.resources import files

        import kubernetes_validate  # noqa: F401 - its package data is what we need
        from referencing import Registry, Resource
    except ImportError:
        raise OperationError("validating core Kubernetes kinds needs kubernetes-validate: "
                             "pip install kubernetes-validate") from None
    root = Path(str(files("kubernetes_validate") / "kubernetes-json-schema"))
    dirs = sorted(p for p in root.glob(f"v{version}.*-local-strict") if p.is_dir())
    if not dirs:
        shipped = sorted({p.name.split("-")[0] for p in root.glob("v*-local-strict")})
        raise OperationError(f"the installed kubernetes-validate has no schemas for "
                             f"Kubernetes {version}; it ships {', '.join(shipped)}")
    definitions = json.loads((dirs[-1] / "_definitions.json").read_text(encoding="utf-8"))
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    return dirs[-1], registry


@functools.lru_cache(maxsize=64)
def core_validator(version: str, api_version: str, kind: str) -> Any | None:
    """A validator for ``kind`` of ``api_version`` in Kubernetes ``version`` (``"1.30"``);
    ``None`` if that is no top-level core kind."""
    directory, registry = _core_schemas(version)
    # kubernetes-validate's file names: "<kind>-<group's first word>-<version>.json"
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = directory / f"{kind.lower()}-{short}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    # Sub-schemas (Affinity, PodSpec, …) have files too; only top-level kinds count.
    if kind not in ((schema.get("properties") or {}).get("kind") or {}).get("enum", []):
        return None
    jsonschema = import_jsonschema()
    return jsonschema.Draft202012Validator(schema, registry=registry)

