"""Custom resources: a registry of CRD schemas, and validators built from them.

A CRD's ``openAPIV3Schema`` is read with Kubernetes' structural rules (``nullable``,
``x-kubernetes-int-or-string``, ``x-kubernetes-preserve-unknown-fields``; any other
object field is unknown, as with ``kubectl apply --validate=strict``) and checked with
jsonschema. The Dask CRDs (``DaskCluster``, ``DaskWorkerGroup``, ``DaskJob``,
``DaskAutoscaler``) come from the helm chart inside the dask-kubernetes package;
Kubeflow's ``PyTorchJob`` and prometheus-operator's ``ServiceMonitor`` and
``PrometheusRule`` ship with hybridnb (``hybridnb/k8s/schemas/``, each file naming its
source release and commit); others are added with :func:`register_crd_schema` or
:func:`register_crd`. Schemas load on first use.

>>> "PyTorchJob (kubeflow.org/v1)" in crd_kinds()
True
>>> "ServiceMonitor (monitoring.coreos.com/v1)" in crd_kinds()
True
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import OperationError, UsageError
from .problems import import_jsonschema

CRDKey = tuple[str, str, str]  # (group, version, kind)
SchemaSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]]

_CRD_SCHEMAS: dict[CRDKey, SchemaSource] = {}
_CRD_VALIDATORS: dict[CRDKey, Any] = {}


def register_crd_schema(group: str, version: str, kind: str, schema: SchemaSource) -> None:
    """Validate custom resources ``group/version`` ``kind`` against ``schema``.

    Parameters
    ----------
    group, version, kind:
        The resource's API group (``kubeflow.org``), version (``v1``) and kind
        (``PyTorchJob``), as in its ``apiVersion`` and ``kind``.
    schema:
        The CRD version's ``openAPIV3Schema``, or a function returning it (called on
        first use, so registering costs nothing). Registering again replaces it.

    Examples
    --------
    >>> register_crd_schema("example.org", "v1", "Widget", {
    ...     "type": "object",
    ...     "properties": {"spec": {"type": "object",
    ...                             "properties": {"size": {"type": "integer"}}}}})
    >>> from hybridnb.k8s.validate import validate_manifest
    >>> [p.message for p in validate_manifest({"apiVersion": "example.org/v1",
    ...     "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "big"}})]
    ["'big' is not of type 'integer'"]
    """
    key = (group, version, kind)
    _CRD_SCHEMAS[key] = schema
    _CRD_VALIDATORS.pop(key, None)


def register_crd(crd: Mapping[str, Any]) -> list[CRDKey]:
    """Register every version of a ``CustomResourceDefinition`` that has a schema.

    Returns the ``(group, version, kind)`` keys registered.

    >>> register_crd({"apiVersion": "apiextensions.k8s.io/v1",
    ...     "kind": "CustomResourceDefinition", "metadata": {"name": "gadgets.example.org"},
    ...     "spec": {"group": "example.org", "names": {"kind": "Gadget"},
    ...              "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
    ...                  "type": "object"}}}]}})
    [('example.org', 'v1', 'Gadget')]
    """
    spec = crd.get("spec") or {}
    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
    if crd.get("kind") != "CustomResourceDefinition" or not group or not kind:
        raise UsageError("expected a CustomResourceDefinition with spec.group and "
                         f"spec.names.kind, got kind {crd.get('kind')!r}")
    keys = []
    for version in spec.get("versions") or []:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            register_crd_schema(group, version["name"], kind, schema)
            keys.append((group, version["name"], kind))
    return keys


def crd_kinds() -> list[str]:
    """``kind`` (``group/version``) of every custom resource with a schema.

    >>> "DaskCluster (kubernetes.dask.org/v1)" in crd_kinds()
    True
    """
    return sorted(f"{kind} ({group}/{version})" for group, version, kind in _CRD_SCHEMAS)


def _dask_crd_loader(filename: str, version: str) -> Callable[[], Mapping[str, Any]]:
    def load() -> Mapping[str, Any]:
        # Located without importing dask_kubernetes (its import is slow and writes
        # ~/.config/dask/kubernetes.yaml). The helm chart's CRDs have every $ref resolved;
        # the ones under operator/customresources/ are templates.
        spec = importlib.util.find_spec("dask_kubernetes")
        roots = list(spec.submodule_search_locations or []) if spec else []
        for root in roots:
            path = (Path(root) / "operator" / "deployment" / "helm"
                    / "dask-kubernetes-operator" / "crds" / filename)
            if path.is_file():
                for item in _load_crd(path)["spec"]["versions"]:
                    if item["name"] == version:
                        return item["schema"]["openAPIV3Schema"]
        raise OperationError(f"the Dask CRD {filename} was not found in the dask-kubernetes "
                             "package; reinstall it: pip install dask-kubernetes")
    return load


def _load_crd(path: Path) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


for _kind, _file in (("DaskCluster", "daskcluster.yaml"), ("DaskJob", "daskjob.yaml"),
                     ("DaskWorkerGroup", "daskworkergroup.yaml"),
                     ("DaskAutoscaler", "daskautoscaler.yaml")):
    register_crd_schema("kubernetes.dask.org", "v1", _kind, _dask_crd_loader(_file, "v1"))

#: CRD schemas shipped with hybridnb (package data), each with a header naming its source.
SCHEMA_DIR = Path(__file__).with_name("schemas")
#: The values the training operator acts on (its CRD says only "string"; they are listed in
#: the field's description). Stricter than the API server, which would accept a typo.
PYTORCHJOB_RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")


def _pytorchjob_schema() -> Mapping[str, Any]:
    """The Kubeflow ``PyTorchJob`` CRD schema (training-operator v1.9.0) and webhook rules.

    The operator's admission webhook accepts only ``Master`` and ``Worker`` replica types;
    a schema check catches that, and a wrong ``restartPolicy``, before a cluster does.
    """
    schema = _load_crd(SCHEMA_DIR / "kubeflow.org_pytorchjobs.v1.yaml")
    replicas = schema["properties"]["spec"]["properties"]["pytorchReplicaSpecs"]
    replicas["propertyNames"] = {"enum": ["Master", "Worker"]}
    policy = replicas["additionalProperties"]["properties"]["restartPolicy"]
    policy["enum"] = list(PYTORCHJOB_RESTART_POLICIES)
    return schema


register_crd_schema("kubeflow.org", "v1", "PyTorchJob", _pytorchjob_schema)


def _shipped_schema(filename: str) -> Callable[[], Mapping[str, Any]]:
    def load() -> Mapping[str, Any]:
        return _load_crd(SCHEMA_DIR / filename)
    return load


# prometheus-operator v0.93.0's CRDs, as the operator's users install them.
for _kind, _file in (("ServiceMonitor", "monitoring.coreos.com_servicemonitors.v1.yaml"),
                     ("PrometheusRule", "monitoring.coreos.com_prometheusrules.v1.yaml")):
    register_crd_schema("monitoring.coreos.com", "v1", _kind, _shipped_schema(_file))

# The API server checks a custom resource's metadata as ObjectMeta whatever its schema
# says; these are ObjectMeta's fields (formats are checked by names.metadata_problems).
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        **{k: {"type": "string"} for k in ("name", "generateName", "namespace", "uid",
                                           "resourceVersion", "selfLink")},
        **{k: {"type": ["string", "null"]} for k in ("creationTimestamp",
                                                     "deletionTimestamp")},
        "labels": _STRING_MAP, "annotations": _STRING_MAP,
        "generation": {"type": "integer"}, "deletionGracePeriodSeconds": {"type": "integer"},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "managedFields": {"type": "array", "items": {"type": "object"}},
    },
}


def structural_to_json_schema(schema: Mapping[str, Any], *, strict: bool = True,
                              _value_only: bool = False) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) equivalent of a CRD's ``openAPIV3Schema``.

    With ``strict``, an object without ``additionalProperties`` or
    ``x-kubernetes-preserve-unknown-fields`` accepts only its declared properties: the
    API server would drop (prune) anything else, and strict field validation reports it.

    >>> structural_to_json_schema({"type": "object", "properties": {
    ...     "n": {"type": "integer", "nullable": True}}})["properties"]["n"]
    {'type': ['integer', 'null']}
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: structural_to_json_schema(v, strict=strict, _value_only=_value_only)
                        for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = structural_to_json_schema(value, strict=strict, _value_only=_value_only)
        elif key in ("anyOf", "allOf", "oneOf", "not"):
            # Value validations only: they never declare which fields exist.
            branches = value if isinstance(value, list) else [value]
            converted = [structural_to_json_schema(v, strict=strict, _value_only=True)
                         for v in branches]
            out[key] = converted if isinstance(value, list) else converted[0]
        elif key == "pattern" and isinstance(value, str):
            out[key] = _python_pattern(value)
        elif key in ("nullable", "exclusiveMinimum", "exclusiveMaximum") or key.startswith(
                "x-kubernetes-"):
            continue  # translated below
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # OpenAPI 3.0 spells exclusive bounds as booleans next to the bound.
        if schema.get(bound) is True and limit in out:
            out[bound] = out.pop(limit)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["type"] = ["integer", "string"]
    if schema.get("x-kubernetes-embedded-resource") and "properties" in out:
        out["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                             "metadata": _OBJECT_META, **out["properties"]}
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    is_object = out.get("type") == "object" or "properties" in out
    if (strict and not _value_only and is_object and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _python_pattern(pattern: str) -> str:
    """A Go (RE2) ``pattern`` as Python's ``re`` reads it.

    RE2 takes flags after ``^`` (``^(?i)(abort|warn)?$`` in PrometheusRule); Python wants
    global flags first, and ``^`` means the same either way.

    >>> _python_pattern("^(?i)(abort|warn)?$")
    '(?i)^(abort|warn)?$'
    """
    return re.sub(r"^\^(\(\?[a-zA-Z]+\))", r"\1^", pattern)


def crd_validator(key: CRDKey) -> Any | None:
    """A validator for custom resources ``key``; ``None`` if no schema is registered."""
    if key not in _CRD_SCHEMAS:
        return None
    if key not in _CRD_VALIDATORS:
        jsonschema = import_jsonschema()
        source = _CRD_SCHEMAS[key]
        schema = structural_to_json_schema(source() if callable(source) else source)
        group, version, kind = key
        # Ours win: a CRD's own "metadata: {type: object}" (kubebuilder writes one) would,
        # in strict mode, reject every ObjectMeta field.
        schema["properties"] = {
            **schema.get("properties", {}),
            "apiVersion": {"const": f"{group}/{version}" if group else version},
            "kind": {"const": kind}, "metadata": _OBJECT_META}
        _CRD_VALIDATORS[key] = jsonschema.Draft202012Validator(schema)
    return _CRD_VALIDATORS[key]

