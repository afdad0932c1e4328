"""prometheus-operator objects that scrape hybridnb: the ``ServiceMonitor`` builder.

Prometheus reads ``/metrics`` through the Service, inside the cluster; the Ingress never
exposes it. Validated against the operator's own CRD schema (``hybridnb/k8s/schemas/``).

>>> sm = service_monitor_manifest("mlp", namespace="ml")
>>> sm["spec"]["endpoints"]
[{'port': 'http', 'path': '/metrics', 'interval': '15s'}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .labels import NAME_LABEL

MONITORING = "monitoring.coreos.com"


def service_monitor_manifest(name: str, *, namespace: str = "default",
                             selector: Mapping[str, str] | None = None, port: str = "http",
                             path: str = "/metrics", interval: str = "15s",
                             labels: Mapping[str, str] | None = None,
                             bearer_secret: tuple[str, str] | None = None) -> dict[str, Any]:
    """A ``ServiceMonitor`` scraping ``path`` on port ``port`` of the matching Services.

    Parameters
    ----------
    name:
        The object's name; also the default selector (``app.kubernetes.io/name``).
    selector:
        ``matchLabels`` of the Services to scrape.
    bearer_secret:
        ``(secret, key)``: send that Secret's value as a bearer token, for endpoints
        whose ``/metrics`` requires the token.

    >>> service_monitor_manifest("m", bearer_secret=("m-token", "token"))["spec"][
    ...     "endpoints"][0]["authorization"]
    {'type': 'Bearer', 'credentials': {'name': 'm-token', 'key': 'token'}}
    """
    endpoint: dict[str, Any] = {"port": port, "path": path, "interval": interval}
    if bearer_secret is not None:
        endpoint["authorization"] = {"type": "Bearer", "credentials": {
            "name": bearer_secret[0], "key": bearer_secret[1]}}
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": f"{MONITORING}/v1", "kind": "ServiceMonitor", "metadata": meta,
            "spec": {"selector": {"matchLabels": dict(selector or {NAME_LABEL: name})},
                     "endpoints": [endpoint]}}
