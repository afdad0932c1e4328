"""Validate manifests the way the API server would, without one.

- Core kinds (``Deployment``, ``Service``, ``Secret``, ``Job``, ``HorizontalPodAutoscaler``,
  ``Ingress``, ``ConfigMap``, …) are checked with the official JSON schemas that
  kubernetes-validate ships, in their *strict* variant so unknown fields are errors.
- Custom resources are checked with jsonschema against their CRD's ``openAPIV3Schema``,
  read with Kubernetes' structural rules: ``nullable``, ``x-kubernetes-int-or-string``,
  ``x-kubernetes-preserve-unknown-fields``; any other object field is unknown, as with
  ``kubectl apply --validate=strict``. The Dask CRDs (``DaskCluster``, ``DaskWorkerGroup``,
  ``DaskJob``, ``DaskAutoscaler``) come from the helm chart inside the dask-kubernetes
  package; Kubeflow's ``PyTorchJob`` ships with hybridnb (``hybridnb/k8s/schemas/``);
  others are added with :func:`register_crd_schema` or :func:`register_crd`.
- Every kind: ``metadata`` names, namespaces and labels follow the DNS and label rules.

The Dask CRDs embed the PodSpec of Kubernetes 1.21, so pod fields added later (e.g.
``resources.claims``) are unknown inside a ``DaskCluster`` — as they are to the operator's
CRD on a real cluster, which would silently drop them.

Problems carry a JSON path (``$.spec.worker.replicas``). jsonschema and
kubernetes-validate are imported only when a manifest is validated.

>>> problems = validate_manifest({"apiVersion": "v1", "kind": "ConfigMap",
...                               "metadata": {"name": "Bad_Name"}, "data": {"a": "1"}})
>>> [str(p) for p in problems]   # doctest: +ELLIPSIS
["ConfigMap/Bad_Name: $.metadata.name: 'Bad_Name' is not a valid DNS-1123 subdomain..."]
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OperationError, UsageError, did_you_mean

#: Kubernetes version whose core schemas are used: the oldest that every supported
#: kubernetes-validate (>=1.30) ships, so results do not depend on the installed release.
#: Manifests that use only stable APIs valid for 1.30 are valid for later versions.
KUBERNETES_VERSION = "1.30"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

# Kinds whose names the API server checks harder than a DNS-1123 subdomain.
_NAME_RULES: dict[str, tuple[str, int]] = {
    "Service": ("dns-1035", 63), "Namespace": ("dns-1123-label", 63),
    # The operator names the scheduler Service "<name>-scheduler" (63 - 10 characters).
    "DaskCluster": ("dns-1123-label", 53),
    # The training operator's webhook: a PyTorchJob's name is a DNS-1035 label.
    "PyTorchJob": ("dns-1035", 63),
}


# --------------------------------------------------------------------------- names


def dns_label(value: str, *, what: str = "name", max_length: int = 63) -> str:
    """``value`` if it is a DNS-1123 label, else a :class:`UsageError` naming it.

    A DNS-1123 label: at most ``max_length`` (63) lower-case letters, digits and ``-``,
    starting and ending with a letter or digit — the rule for most Kubernetes names.

    >>> dns_label("dask-gke")
    'dask-gke'
    >>> dns_label("My_Cluster", what="cluster name")
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: invalid cluster name 'My_Cluster': ...
    """
    if isinstance(value, str) and len(value) <= max_length and _DNS_LABEL.match(value):
        return value
    hint = ""
    if isinstance(value, str):
        try:
            hint = f" (e.g. '{to_dns_label(value, max_length=max_length)}')"
        except UsageError:
            pass
    raise UsageError(f"invalid {what} {value!r}: a Kubernetes name must be at most "
                     f"{max_length} lower-case letters, digits and '-', starting and ending "
                     f"with a letter or digit{hint}")


def to_dns_label(value: str, *, max_length: int = 63) -> str:
    """``value`` made into a DNS-1123 label: lower-cased, other characters as ``-``.

    A name cut to fit gets a short hash of the original, so two long names that share
    a prefix stay distinct.

    >>> to_dns_label("On_Prem.Site")
    'on-prem-site'
    >>> len(to_dns_label("x" * 80))
    63
    """
    import hashlib

    label = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    if not label:
        raise UsageError(f"cannot make a Kubernetes name from {value!r}: it needs at least "
                         "one letter or digit")
    if len(label) > max_length:
        digest = hashlib.sha256(str(value).encode()).hexdigest()[:8]
        label = f"{label[:max_length - 9].rstrip('-')}-{digest}"
    return label


def label_value(value: str, *, what: str = "label value") -> str:
    """``value`` if Kubernetes accepts it as a label value, else a :class:`UsageError`.

    >>> label_value("on_prem")
    'on_prem'
    """
    if isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    raise UsageError(f"invalid {what} {value!r}: a label value is at most 63 letters, "
                     "digits, '-', '_' or '.', starting and ending with a letter or digit")


def _name_problem(value: Any, rule: str, max_length: int) -> str | None:
    pattern = {"dns-1035": _DNS_1035, "dns-1123-label": _DNS_LABEL,
               "dns-1123-subdomain": _DNS_SUBDOMAIN}[rule]
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if len(value) > max_length or not pattern.match(value):
        what = {"dns-1035": "DNS-1035 label", "dns-1123-label": "DNS-1123 label",
                "dns-1123-subdomain": "DNS-1123 subdomain"}[rule]
        first = "a letter" if rule == "dns-1035" else "a letter or digit"
        return (f"{value!r} is not a valid {what}: at most {max_length} lower-case "
                f"letters, digits and '-', starting with {first} and ending with a letter "
                "or digit")
    return None


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (f"label key {key!r}: name must be at most 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit")
    return None


# --------------------------------------------------------------------------- problems


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


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _short(message: str, limit: int = 240) -> str:
    # jsonschema quotes whole instances; a Pod spec in a message helps nobody.
    return message if len(message) <= limit else message[:limit - 1] + "…"


def _schema_problems(validator: Any, obj: Mapping[str, Any], resource: str
                     ) -> list[ManifestProblem]:
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
                        resource, _json_path([*path, key]),
                        f"unknown field {key!r}{did_you_mean(key, known)}"))
        elif error.validator == "required":
            for key in error.validator_value:
                if isinstance(error.instance, Mapping) and key not in error.instance:
                    problems.append(ManifestProblem(resource, _json_path([*path, key]),
                                                    "required field is missing"))
        else:
            problems.append(ManifestProblem(resource, _json_path(path), _short(error.message)))
    return problems


# --------------------------------------------------------------------------- CRD schemas

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

# The API server checks a custom resource's metadata as ObjectMeta whatever its schema
# says; these are ObjectMeta's fields (formats are checked by _metadata_problems).
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


def _crd_validator(key: CRDKey) -> Any | None:
    if key not in _CRD_SCHEMAS:
        return None
    if key not in _CRD_VALIDATORS:
        jsonschema = _import_jsonschema()
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


# --------------------------------------------------------------------------- core kinds


def _import_jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema comes with JupyterLab
        raise OperationError("validating Kubernetes manifests needs jsonschema: "
                             "pip install jsonschema") from None
    return jsonschema


def _is_core_group(group: str) -> bool:
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
def _core_validator(version: str, api_version: str, kind: str) -> Any | None:
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
    jsonschema = _import_jsonschema()
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --------------------------------------------------------------------------- entry points


def _metadata_problems(obj: Mapping[str, Any], kind: str, resource: str
                       ) -> list[ManifestProblem]:
    meta = obj.get("metadata")
    if meta is None:
        return [ManifestProblem(resource, "$.metadata", "required field is missing")]
    if not isinstance(meta, Mapping):
        return []  # the schema reports the type
    problems = []
    if "name" not in meta and "generateName" not in meta:
        problems.append(ManifestProblem(resource, "$.metadata.name", "required field is missing"))
    elif "name" in meta:
        rule, length = _NAME_RULES.get(kind, ("dns-1123-subdomain", 253))
        message = _name_problem(meta["name"], rule, length)
        if message:
            problems.append(ManifestProblem(resource, "$.metadata.name", message))
    if "namespace" in meta:
        message = _name_problem(meta["namespace"], "dns-1123-label", 63)
        if message:
            problems.append(ManifestProblem(resource, "$.metadata.namespace", message))
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            path = _json_path(["metadata", field, key])
            message = _label_key_problem(str(key))
            if message:
                problems.append(ManifestProblem(resource, path, message))
            if field == "labels" and isinstance(value, str) and (
                    len(value) > 63 or not _LABEL_VALUE.match(value)):
                problems.append(ManifestProblem(
                    resource, path, f"label value {value!r}: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending with a letter or digit"))
    return problems


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
    validator = _crd_validator((group, version, str(kind)))
    if validator is None and _is_core_group(group):
        wanted = (kubernetes_version or KUBERNETES_VERSION).lstrip("v")
        minor = ".".join(wanted.split(".")[:2])  # "1.31.2" -> "1.31"
        validator = _core_validator(minor, str(api_version), str(kind))
    if validator is None:
        return [ManifestProblem(
            resource, "$.kind",
            f"no schema for kind {kind!r} in apiVersion {api_version!r}: neither a core "
            f"Kubernetes kind nor a registered custom resource (known: "
            f"{', '.join(crd_kinds())}); register its CRD with "
            "hybridnb.k8s.validate.register_crd()")]
    problems = set(_schema_problems(validator, obj, resource))
    problems.update(_metadata_problems(obj, str(kind), resource))
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
