"""Deployments for other targets, as pure functions: Kubernetes manifests, nginx, edge.

Nothing here touches a cluster or a host: each function returns dicts (manifests) or
text (configuration files) that tests validate and ``hybridnb deploy --render`` writes.

- :func:`kubernetes_manifests`: a Deployment of ``hybridnb serve`` pods (readiness and
  liveness on the OIP health routes, the token from a Secret), a Service, a
  HorizontalPodAutoscaler, an Ingress and a Prometheus-operator ServiceMonitor.
- :func:`nginx_config`: an nginx front for replicas on on-prem machines
  (``least_conn``, round robin or ``ip_hash``), with keep-alive to the upstreams.
- :func:`edge_unit`: a single-process replica (same protocol) as a systemd unit, for an
  edge site that runs one small machine.

>>> objs = kubernetes_manifests("mlp", image="registry.local/hybridnb:1", replicas=2)
>>> [o["kind"] for o in objs]
['Deployment', 'Service', 'HorizontalPodAutoscaler', 'Ingress', 'ServiceMonitor']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UsageError

PORT = 8080
#: nginx ``upstream`` balancing methods by the names ``deploy --routing`` uses.
NGINX_METHODS = {"round_robin": "", "least_connections": "least_conn;", "ip_hash": "ip_hash;"}


def _labels(name: str, site: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "endpoint",
            "app.kubernetes.io/managed-by": "hybridnb", "hybridnb.io/site": site}


def kubernetes_manifests(name: str, *, image: str, replicas: int = 2, site: str = "default",
                         namespace: str = "default", model_claim: str | None = None,
                         bundle_dir: str = "/models/bundle", token_secret: str | None = None,
                         autoscale: dict[str, Any] | None = None, host: str | None = None,
                         cpu: str = "1", memory: str = "1Gi",
                         serve_args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler, Ingress and ServiceMonitor.

    Parameters
    ----------
    name:
        Resource names and the ``app.kubernetes.io/name`` label (a DNS label).
    image:
        An image with hybridnb installed (and the bundle at ``bundle_dir``, unless
        ``model_claim`` mounts it from a PersistentVolumeClaim).
    token_secret:
        A Secret with key ``token``; pods read it as ``$HYBRIDNB_ENDPOINT_TOKEN``
        (required: pods listen on all addresses).
    autoscale:
        ``{"min", "max", "target_cpu_percent"}`` for the HPA (defaults 1, 4, 70).
    host:
        The Ingress host (none: any host).
    """
    if replicas < 1:
        raise UsageError(f"replicas must be at least 1, got {replicas}")
    labels = _labels(name, site)
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "endpoint"}
    secret = token_secret or f"{name}-token"
    container: dict[str, Any] = {
        "name": "server", "image": image,
        "command": ["hybridnb", "serve", bundle_dir, "--host", "0.0.0.0", "--port", str(PORT),
                    *serve_args],
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [{"name": "HYBRIDNB_ENDPOINT_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}},
                {"name": "HYBRIDNB_HOME", "value": "/tmp/hybridnb"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                          "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"memory": memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if model_claim:
        container["volumeMounts"].append({"name": "model", "mountPath": bundle_dir,
                                          "readOnly": True})
        volumes.append({"name": "model", "persistentVolumeClaim": {
            "claimName": model_claim, "readOnly": True}})
    meta = {"name": name, "namespace": namespace, "labels": labels}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container], "volumes": volumes,
                                       # SIGTERM drains: readiness goes 503 first.
                                       "terminationGracePeriodSeconds": 40}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"selector": selector, "ports": [{"name": "http", "port": 80,
                                                         "targetPort": "http"}]}}
    scale = {"min": 1, "max": 4, "target_cpu_percent": 70, **(autoscale or {})}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": name},
                    "minReplicas": int(scale["min"]), "maxReplicas": int(scale["max"]),
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization",
                                                  "averageUtilization":
                                                      int(scale["target_cpu_percent"])}}}]}}
    rule: dict[str, Any] = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": name, "port": {"name": "http"}}}}]}}
    if host:
        rule["host"] = host
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
               "spec": {"rules": [rule]}}
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": meta,
               "spec": {"selector": {"matchLabels": selector},
                        "endpoints": [{"port": "http", "path": "/metrics",
                                       "interval": "15s"}]}}
    return [deployment, service, hpa, ingress, monitor]


def nginx_config(upstreams: Sequence[str], *, routing: str = "least_connections",
                 listen: str = "127.0.0.1:8080", name: str = "hybridnb",
                 pid: str = "/run/nginx-hybridnb.pid",
                 error_log: str = "/var/log/nginx/hybridnb-error.log") -> str:
    """A complete ``nginx.conf`` balancing over ``upstreams`` (``host:port`` each).

    >>> "least_conn;" in nginx_config(["10.0.0.5:8080", "10.0.0.6:8080"])
    True
    """
    if not upstreams:
        raise UsageError("nginx needs at least one upstream host:port")
    try:
        method = NGINX_METHODS[routing]
    except KeyError:
        raise UsageError(f"nginx cannot route {routing!r}; choose one of "
                         f"{', '.join(NGINX_METHODS)}") from None
    servers = "\n".join(f"        server {u} max_fails=2 fail_timeout=5s;" for u in upstreams)
    return f"""# Written by hybridnb: an nginx front for endpoint replicas ({routing}).
worker_processes auto;
pid {pid};
error_log {error_log} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_max_body_size 8m;
    upstream {name} {{
        {method}
{servers}
        keepalive 64;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # A replica that is gone or draining: try the next one, once.
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def edge_unit(bundle_dir: str, *, port: int = PORT, host: str = "0.0.0.0",
              env_file: str = "/etc/hybridnb/endpoint.env", user: str = "hybridnb",
              serve_args: Sequence[str] = ()) -> str:
    """A systemd unit running one replica (``hybridnb serve``) on an edge machine.

    The token comes from ``env_file`` (``HYBRIDNB_ENDPOINT_TOKEN=...``), never the unit.

    >>> "ExecStart=hybridnb serve /srv/model" in edge_unit("/srv/model")
    True
    """
    args = " ".join(["hybridnb", "serve", bundle_dir, "--host", host, "--port", str(port),
                     *serve_args])
    return f"""[Unit]
Description=hybridnb endpoint ({bundle_dir})
After=network-online.target
Wants=network-online.target

[Service]
User={user}
EnvironmentFile={env_file}
ExecStart={args}
# SIGTERM drains in-flight requests before exit.
KillSignal=SIGTERM
TimeoutStopSec=40
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""
