"""Kubernetes' rules for names and labels: checks that raise for hybridnb's own inputs
(:func:`dns_label`, :func:`label_value`), a fixer (:func:`to_dns_label`), and the check of
a manifest's ``metadata`` (names, namespace, label and annotation keys, label values)
that validation runs on every kind.

>>> [str(p) for p in metadata_problems({"metadata": {"name": "db", "labels": {"a": "b c"}}},
...                                    "Service", "Service/db")]   # doctest: +ELLIPSIS
["Service/db: $.metadata.labels.a: label value 'b c': at most 63 letters, ..."]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from .problems import ManifestProblem, json_path

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


def to_dns_label(value: str, *, max_length: int = 63, prefix: str = "hybridnb") -> str:
    """``value`` made into a name that every Kubernetes kind accepts.

    Lower-cased, each run of other characters as ``-``; a name that would start with a
    digit gets ``prefix-`` in front (a Service's name is a DNS-1035 label: a letter
    first), so the result is a DNS-1035 label, hence also a DNS-1123 label and
    subdomain. A name cut to fit gets a short hash of the original, so two long names
    that share a prefix stay distinct. Every name hybridnb derives from a user's words
    (bundle, notebook, run) goes through here.

    >>> to_dns_label("On_Prem.Site"), to_dns_label("wine.v2"), to_dns_label("3wine")
    ('on-prem-site', 'wine-v2', 'hybridnb-3wine')
    >>> len(to_dns_label("x" * 80))
    63
    """
    import hashlib

    label = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    if not label:
        raise UsageError(f"cannot make a Kubernetes name from {value!r}: it needs at least "
                         "one letter or digit")
    if label[0].isdigit():
        label = f"{prefix}-{label}"
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


def metadata_problems(obj: Mapping[str, Any], kind: str, resource: str
                      ) -> list[ManifestProblem]:
    """What is wrong with ``obj``'s ``metadata`` by the API server's rules for ``kind``."""
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
            path = json_path(["metadata", field, key])
            message = _label_key_problem(str(key))
            if message:
                problems.append(ManifestProblem(resource, path, message))
            if field == "labels" and isinstance(value, str) and (
                    len(value) > 63 or not _LABEL_VALUE.match(value)):
                problems.append(ManifestProblem(
                    resource, path, f"label value {value!r}: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending with a letter or digit"))
    return problems
