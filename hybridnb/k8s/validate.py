"""Validate manifests the way the API server would, without one.

- Core kinds (``Deployment``, ``Service``, ``Secret``, ``Job``, ``HorizontalPodAutoscaler``,
  ``Ingress``, ``ConfigMap``, …) are checked with the official JSON schemas that
  kubernetes-validate ships, in their *strict* variant so unknown fields are errors
  (:mod:`hybridnb.k8s.core_kinds`).
- Custom resources are checked with jsonschema against their CRD's ``openAPIV3Schema``,
  read with Kubernetes' structural rules: ``nullable``, ``x-kubernetes-int-or-string``,
  ``x-kubernetes-preserve-unknown-fields``; any other object field is unknown, as with
  ``kubectl apply --validate=strict``. The Dask CRDs (``DaskCluster``, ``DaskWorkerGroup``,
  ``DaskJob``, ``DaskAutoscaler``) come from the helm chart inside the dask-kubernetes
  package; Kubeflow's ``PyTorchJob`` ships with hybridnb (``hybridnb/k8s/schemas/``);
  others are added with :func:`register_crd_schema` or :func:`register_crd`
  (:mod:`hybridnb.k8s.crds`).
- Every kind: ``metadata`` names, namespaces and labels follow the DNS and label rules
  (:mod:`hybridnb.k8s.names`).

The Dask CRDs embed the PodSpec of Kubernetes 1.21, so pod fields added later (e.g.
``resources.claims``) are unknown inside a ``DaskCluster`` — as they are to the operator's
CRD on a real cluster, which would silently drop them.

Problems carry a JSON path (``$.spec.worker.replicas``; :mod:`hybridnb.k8s.problems`).
jsonschema and kubernetes-validate are imported only when a manifest is validated. This
module holds the entry points and re-exports the public names of the others.

>>> problems = validate_manifest({"apiVersion": "v1", "kind": "ConfigMap",
...                               "metadata": {"name": "Bad_Name"}, "data": {"a": "1"}})
>>> [str(p) for p in problems]   # doctest: +ELLIPSIS
["ConfigMap/Bad_Name: $.metadata.name: 'Bad_Name' is not a valid DNS-1123 subdomain..."]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .core_kinds import KUBERNETES_VERSION, core_validator, is_core_group
from .crds import (
    PYTORCHJOB_RESTART_POLICIES,
    SCHEMA_DIR,
    CRDKey,
    SchemaSource,
    crd_kinds,
    crd_validator,
    register_crd,
    register_crd_schema,
    structural_to_json_schema,
)
from .names import dns_label, label_value, metadata_problems, to_dns_label
from .problems import ManifestError, ManifestProblem, schema_problems

__all__ = [
    "KUBERNETES_VERSION", "PYTORCHJOB_RESTART_POLICIES", "SCHEMA_DIR", "CRDKey",
    "ManifestError", "ManifestProblem", "SchemaSource", "assert_valid", "crd_kinds",
    "dns_label", "label_value", "register_crd", "register_crd_schema",
    "structural_to_json_schema", "to_dns_label", "validate_manifest", "write_manifests",
]


def validate_manifest(obj: Mapping[str, Any], *, kubernetes_version: str | None = None
                      ) -> list[ManifestProblem]:
    """Every problem the API server would find in ``obj``; empty when it is valid.

    Parameters
    ----------
    obj:
        One manifest, as a dict.
    kubernetes_version:
        ``"1.31"`` (or ``"1.31.2"``): whose core schemas to use; None uses
        :data:`KUBERNETES_VERSION`.

    Examples
    --------
    >>> secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
    ...           "type": "Opaque", "data": {"k": "dg=="}, "stringdata": {}}
    >>> [str(p) for p in validate_manifest(secret)]
    ["Secret/s: $.stringdata: unknown field 'stringdata' (did you mean 'stringData'?)"]
    """
    if not isinstance(obj, Mapping):
        return [ManifestProblem("?", "$", f"a manifest is a mapping, got {type(obj).__name__}")]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name", meta.get("generateName", "?")) if isinstance(meta, Mapping) else "?"
    resource = f"{kind or '?'}/{name}"
    missing = [ManifestProblem(resource, f"$.{field}", "required field is missing (a string)")
               for field, value in (("apiVersion", api_version), ("kind", kind))
               if not isinstance(value, str) or not value]
    if missing:
        return missing
    group, _, version = str(api_version).rpartition("/")
    validator = crd_validator((group, version, str(kind)))
    if validator is None and is_core_group(group):
        wanted = (kubernetes_version or KUBERNETES_VERSION).lstrip("v")
        minor = ".".join(wanted.split(".")[:2])  # "1.31.2" -> "1.31"
        validator = core_validator(minor, str(api_version), str(kind))
    if validator is None:
        return [ManifestProblem(
            resource, "$.kind",
            f"no schema for kind {kind!r} in apiVersion {api_version!r}: neither a core "
            f"Kubernetes kind nor a registered custom resource (known: "
            f"{', '.join(crd_kinds())}); register its CRD with "
            "hybridnb.k8s.validate.register_crd()")]
    problems = set(schema_problems(validator, obj, resource))
    problems.update(metadata_problems(obj, str(kind), resource))
    return sorted(problems, key=lambda p: (p.path, p.message))


def assert_valid(obj: Mapping[str, Any], *, kubernetes_version: str | None = None
                 ) -> Mapping[str, Any]:
    """``obj`` itself when valid, else a :class:`ManifestError` listing every problem.

    >>> assert_valid({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c'}}
    """
    problems = validate_manifest(obj, kubernetes_version=kubernetes_version)
    if problems:
        raise ManifestError(problems)
    return obj


def write_manifests(objs: Iterable[Mapping[str, Any]], out_dir: str | Path, *,
                    validate: bool = True, kubernetes_version: str | None = None
                    ) -> list[Path]:
    """Write each manifest to ``out_dir`` as YAML, atomically; return the paths.

    Files are named ``NN-kind-name.yaml`` in the given order, so ``kubectl apply -f
    out_dir`` creates them in that order (a Secret before the cluster that mounts it).
    With ``validate``, nothing is written unless every manifest is valid.

    >>> import tempfile
    >>> [p.name for p in write_manifests(
    ...     [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}],
    ...     tempfile.mkdtemp())]
    ['00-configmap-c.yaml']
    """
    import yaml

    from ..fileio import atomic_write_text

    objs = list(objs)
    if validate:
        problems = [p for obj in objs
                    for p in validate_manifest(obj, kubernetes_version=kubernetes_version)]
        if problems:
            raise ManifestError(problems)
    paths = []
    for index, obj in enumerate(objs):
        name = (obj.get("metadata") or {}).get("name") or "unnamed"
        stem = to_dns_label(f"{obj.get('kind', 'object')}-{name}", max_length=120)
        text = yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False)
        paths.append(atomic_write_text(Path(out_dir) / f"{index:02d}-{stem}.yaml", text))
    return paths
