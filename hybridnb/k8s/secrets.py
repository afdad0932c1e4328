"""Secrets that rendered workloads need, kept apart from every other manifest.

hybridnb never puts a secret value in a manifest that people commit, review or paste
into a ticket: Deployments and Jobs refer to a Secret by name (``secretKeyRef``), and
the Secret itself is written alone, to a file named ``*.secret.yaml``, readable by its
owner only (mode 0600), next to a ``.gitignore`` that keeps such files out of version
control. ``kubectl apply -f DIR`` then creates it with the rest, so pods start;
a team that manages secrets elsewhere (sealed-secrets, external-secrets, Vault) names an
existing Secret instead and nothing secret is written at all.

>>> s = secret_manifest("mlp-token", {"token": "t0k"}, namespace="ml")
>>> s["kind"], s["type"], sorted(s["stringData"])
('Secret', 'Opaque', ['token'])
>>> secret_ref("mlp-token", "token")
{'secretKeyRef': {'name': 'mlp-token', 'key': 'token'}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: How a file holding a secret value is named; the ``.gitignore`` pattern matches it.
SECRET_SUFFIX = ".secret.yaml"
GITIGNORE_PATTERN = f"*{SECRET_SUFFIX}"
_GITIGNORE_NOTE = ("# Written by hybridnb: files holding secret values (mode 0600) stay out "
                   "of version control.\n")


def secret_manifest(name: str, values: Mapping[str, str], *, namespace: str = "default",
                    labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An ``Opaque`` Secret holding ``values`` (``stringData``: the API server encodes it).

    Only ever written with :func:`write_secret_file`, never with other manifests.
    """
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "stringData": {str(k): str(v) for k, v in values.items()}}


def secret_ref(name: str, key: str) -> dict[str, Any]:
    """An env ``valueFrom`` reading ``key`` of Secret ``name``."""
    return {"secretKeyRef": {"name": name, "key": key}}


def secret_file_name(obj: Mapping[str, Any], prefix: str = "") -> str:
    """``PREFIXsecret-NAME.secret.yaml``: the file name of a Secret manifest."""
    return f"{prefix}secret-{obj['metadata']['name']}{SECRET_SUFFIX}"


def gitignore_text(existing: str = "") -> str:
    """``existing`` ``.gitignore`` text with the secret files' pattern added if missing.

    >>> gitignore_text("build/\\n").splitlines()[-1]
    '*.secret.yaml'
    """
    if GITIGNORE_PATTERN in existing.splitlines():
        return existing
    head = existing if not existing or existing.endswith("\n") else existing + "\n"
    return f"{head}{_GITIGNORE_NOTE}{GITIGNORE_PATTERN}\n"


def write_secret_file(obj: Mapping[str, Any], path: str | Path) -> Path:
    """Write Secret ``obj`` to ``path`` (mode 0600, atomically) and make its directory's
    ``.gitignore`` ignore it; return the path."""
    import yaml

    from ..fileio import atomic_write_text

    path = Path(path)
    if not path.name.endswith(SECRET_SUFFIX):
        raise ValueError(f"a secret's file name ends in {SECRET_SUFFIX}, got {path.name}")
    written = atomic_write_text(path, yaml.safe_dump(dict(obj), sort_keys=False), mode=0o600)
    ignore = path.parent / ".gitignore"
    old = ignore.read_text(encoding="utf-8") if ignore.is_file() else ""
    new = gitignore_text(old)
    if new != old:
        atomic_write_text(ignore, new)
    return written
