"""Deployments for other targets: Kubernetes manifests, nginx, edge units, and their files.

The builders touch no cluster and no host: each returns dicts (manifests) or text
(configuration files) that tests validate; ``hybridnb deploy --render`` writes them with
:func:`write_rendering`.

- :func:`kubernetes_manifests`: a Deployment of ``hybridnb serve`` pods (readiness and
  liveness on the OIP health routes, the token from a Secret, a numeric non-root user),
  a Service, a HorizontalPodAutoscaler, an Ingress for the inference routes only and a
  prometheus-operator ServiceMonitor (Prometheus scrapes ``/metrics`` via the Service).
  :func:`render_kubernetes` adds the token's Secret, in a file of its own, and validates
  every object.
- :func:`nginx_config`: an nginx front for replicas on on-prem machines
  (``least_conn``, round robin or ``ip_hash``), with keep-alive to the upstreams; on
  loopback unless given a TLS certificate.
- :func:`edge_unit`: a single-process replica (same protocol) as a systemd unit, for an
  edge site that runs one small machine.

>>> objs = kubernetes_manifests("wine.v2", image="registry.local/hybridnb:1", replicas=2)
>>> [(o["kind"], o["metadata"]["name"]) for o in objs][:2]
[('Deployment', 'wine-v2'), ('Service', 'wine-v2')]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..k8s.labels import (
    COMPONENT_LABEL,
    ENDPOINT_COMPONENT,
    NAME_LABEL,
    label_key,
    standard_labels,
)
from .auth import TOKEN_ENV, is_loopback
from .settings import ServeSettings

PORT = 8080
#: nginx ``upstream`` balancing methods by the names ``deploy --routing`` uses.
NGINX_METHODS = {"round_robin": "", "least_connections": "least_conn;", "ip_hash": "ip_hash;"}
#: What the Ingress routes to the pods: the Open Inference Protocol (``/v2``) and KServe
#: v1 (``/v1``). Not ``/metrics``: Prometheus scrapes the Service inside the cluster.
INGRESS_PREFIXES = ("/v2", "/v1")
#: The file marking a directory as written by :func:`write_rendering` (so it may be
#: replaced by the next rendering; any other non-empty directory is refused).
RENDER_MARKER = ".hybridnb-render"
#: The key of the token in the endpoint's Secret.
TOKEN_KEY = "token"
#: The annotation holding the name the objects' names were made from (a bundle's name).
MODEL_ANNOTATION = label_key("model")


@dataclass
class Rendering:
    """The files of one rendering, to write into one directory.

    ``files`` hold no secret value (they may be committed and reviewed); each of
    ``secrets`` is a Secret manifest written alone, mode 0600, git-ignored
    (:mod:`hybridnb.k8s.secrets`); ``notes`` tell the user what to do next and never
    contain a secret.
    """

    target: str
    files: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _selector(name: str) -> dict[str, str]:
    """The labels that pick endpoint ``name``'s pods and Service (and only them)."""
    return {NAME_LABEL: name, COMPONENT_LABEL: ENDPOINT_COMPONENT}


def _labels(name: str, site: str) -> dict[str, str]:
    return standard_labels(site, _selector(name))


def kubernetes_manifests(name: str, *, image: str, replicas: int = 2, site: str = "default",
                         namespace: str = "default", model_claim: str | None = None,
                         bundle_dir: str = "/models/bundle", token_secret: str | None = None,
                         autoscale: dict[str, Any] | None = None, host: str | None = None,
                         tls_secret: str | None = None, metrics_token: bool = False,
                         cpu: str = "1", memory: str = "1Gi",
                         serve_args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler, Ingress and ServiceMonitor.

    Parameters
    ----------
    name:
        What the objects are named after, e.g. the bundle's name; made into a valid
        name by :func:`hybridnb.k8s.names.to_dns_label` (``wine.v2`` -> ``wine-v2``,
        ``3wine`` -> ``hybridnb-3wine``) and kept as the ``hybridnb.io/model`` annotation.
    image:
        An image with hybridnb installed (and the bundle at ``bundle_dir``, unless
        ``model_claim`` mounts it from a PersistentVolumeClaim), running as uid 1000 or
        any numeric user (:mod:`hybridnb.k8s.pods`).
    token_secret:
        The Secret (key ``token``) pods read as ``$HYBRIDNB_ENDPOINT_TOKEN``; default
        ``NAME-token``. Pods listen on all addresses, so the token is required: the pods
        wait until the Secret exists (:func:`render_kubernetes` renders it).
    autoscale:
        ``{"min", "max", "target_cpu_percent"}`` for the HPA (defaults 1, 4, 70).
    host, tls_secret:
        The Ingress host (none: any host), and a TLS Secret for it.
    metrics_token:
        The ServiceMonitor sends the token: for servers whose ``/metrics`` requires it.
    """
    from ..k8s.monitoring import service_monitor_manifest
    from ..k8s.names import to_dns_label
    from ..k8s.pods import container_security_context, pod_security_context

    if replicas < 1:
        raise UsageError(f"replicas must be at least 1, got {replicas}")
    scale = {"min": 1, "max": 4, "target_cpu_percent": 70, **(autoscale or {})}
    if int(scale["max"]) < int(scale["min"]):
        raise UsageError(f"autoscaling needs max >= min, got min {scale['min']} and max "
                         f"{scale['max']}")
    model, name = name, to_dns_label(name)
    labels = _labels(name, site)
    selector = _selector(name)
    secret = token_secret or token_secret_name(name)
    container: dict[str, Any] = {
        "name": "server", "image": image,
        "command": ["hybridnb", "serve", bundle_dir, "--host", "0.0.0.0", "--port", str(PORT),
                    *serve_args],
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret,
                                                                   "key": TOKEN_KEY}}},
                # The root file system is read-only: state and caches go to /tmp.
                {"name": "HYBRIDNB_HOME", "value": "/tmp/hybridnb"},
                {"name": "HOME", "value": "/tmp"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                          "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"memory": memory}},
        "securityContext": container_security_context(read_only_root=True),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if model_claim:
        container["volumeMounts"].append({"name": "model", "mountPath": bundle_dir,
                                          "readOnly": True})
        volumes.append({"name": "model", "persistentVolumeClaim": {
            "claimName": model_claim, "readOnly": True}})

    def meta() -> dict[str, Any]:  # a fresh dict each time: YAML would alias shared ones
        return {"name": name, "namespace": namespace, "labels": dict(labels),
                "annotations": {MODEL_ANNOTATION: model}}

    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(),
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(selector)},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": dict(labels)},
                              "spec": {"containers": [container], "volumes": volumes,
                                       "securityContext": pod_security_context(volumes=True),
                                       # The server never calls the Kubernetes API.
                                       "automountServiceAccountToken": False,
                                       # SIGTERM drains: readiness goes 503 first.
                                       "terminationGracePeriodSeconds": 40}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta(),
               "spec": {"selector": dict(selector), "ports": [{"name": "http", "port": 80,
                                                               "targetPort": "http"}]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(),
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": name},
                    "minReplicas": int(scale["min"]), "maxReplicas": int(scale["max"]),
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization",
                                                  "averageUtilization":
                                                      int(scale["target_cpu_percent"])}}}]}}
    backend = {"service": {"name": name, "port": {"name": "http"}}}
    rule: dict[str, Any] = {"http": {"paths": [
        {"path": prefix, "pathType": "Prefix", "backend": backend}
        for prefix in INGRESS_PREFIXES]}}
    if host:
        rule["host"] = host
    ingress_meta = meta()
    # ingress-nginx refuses bodies over 1 MiB unless told; allow what a replica takes.
    ingress_meta["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] = \
        str(ServeSettings().max_body_bytes)
    ingress: dict[str, Any] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                               "metadata": ingress_meta, "spec": {"rules": [rule]}}
    if tls_secret:
        ingress["spec"]["tls"] = [{"secretName": tls_secret, **({"hosts": [host]} if host
                                                                 else {})}]
    monitor = service_monitor_manifest(
        name, namespace=namespace, selector=selector, labels=labels,
        bearer_secret=(secret, TOKEN_KEY) if metrics_token else None)
    monitor["metadata"]["annotations"] = {MODEL_ANNOTATION: model}
    return [deployment, service, hpa, ingress, monitor]


def token_secret_name(model: str) -> str:
    """The default name of an endpoint's token Secret.

    >>> token_secret_name("wine.v2")
    'wine-v2-token'
    """
    from ..k8s.names import to_dns_label

    return f"{to_dns_label(model)}-token"


def token_secret_manifest(model: str, token: str, *, namespace: str = "default",
                          site: str = "default") -> dict[str, Any]:
    """The token Secret (key ``token``) of the endpoint named after ``model``: for a file
    of its own, never with the other manifests."""
    from ..k8s.names import to_dns_label
    from ..k8s.secrets import secret_manifest

    return secret_manifest(token_secret_name(model), {TOKEN_KEY: token}, namespace=namespace,
                           labels=_labels(to_dns_label(model), site))


def render_kubernetes(model: str, *, image: str, replicas: int = 2, site: str = "default",
                      namespace: str = "default", token: str | None = None,
                      token_secret: str | None = None, autoscale: dict[str, Any] | None = None,
                      **options: Any) -> Rendering:
    """The manifests of :func:`kubernetes_manifests` and the token's Secret, validated.

    How the token reaches the pods (a platform engineer's trade-off): the Deployment
    reads it from a Secret, so no manifest that people commit, diff or paste holds it.
    Without ``token_secret``, that Secret is rendered too, holding ``token`` (a fresh
    random one when None) in a file of its own (``00-secret-NAME-token.secret.yaml``,
    mode 0600, git-ignored), so ``kubectl apply -f DIR`` starts working pods in one step;
    the other files can be committed. With ``token_secret``, the Secret is expected to
    exist (sealed-secrets, external-secrets, ``kubectl create secret``) and nothing
    secret is rendered.

    Raises :class:`~hybridnb.k8s.problems.ManifestError` listing every problem when any
    object is invalid.

    >>> r = render_kubernetes("3wine", image="img:1", token="t0k")
    >>> sorted(r.secrets), "t0k" in "".join(r.files.values())
    (['00-secret-hybridnb-3wine-token.secret.yaml'], False)
    """
    import secrets as random_tokens

    import yaml

    from ..k8s.names import to_dns_label
    from ..k8s.problems import ManifestError
    from ..k8s.secrets import secret_file_name
    from ..k8s.validate import dns_label, validate_manifest

    if token_secret is not None:
        dns_label(token_secret, what="token Secret name", max_length=253)
    objs = kubernetes_manifests(model, image=image, replicas=replicas, site=site,
                                namespace=namespace, token_secret=token_secret,
                                autoscale=autoscale, **options)
    secret_name = token_secret or token_secret_name(model)
    out = Rendering("kubernetes")
    secret = None
    if token_secret is None:
        secret = token_secret_manifest(model, token or random_tokens.token_urlsafe(32),
                                       namespace=namespace, site=site)
    problems = [p for obj in [*objs, *([secret] if secret else [])]
                for p in validate_manifest(obj)]
    if problems:
        raise ManifestError(problems)
    for index, obj in enumerate(objs, start=1):
        stem = to_dns_label(f"{obj['kind']}-{obj['metadata']['name']}", max_length=120)
        out.files[f"{index:02d}-{stem}.yaml"] = yaml.safe_dump(obj, sort_keys=False)
    apply = "kubectl apply -f {out}"
    if secret is not None:
        out.secrets[secret_file_name(secret, "00-")] = secret
        out.notes += [
            f"the token is in {{out}}/{secret_file_name(secret, '00-')} (mode 600, "
            "git-ignored): keep it out of version control",
            f"{apply} creates the Secret and the endpoint",
            f"read the token: kubectl get secret {secret_name} -n {namespace} "
            "-o jsonpath='{.data.token}' | base64 -d"]
    else:
        out.notes += [
            f"the pods wait for Secret {secret_name!r} (key {TOKEN_KEY!r}) in namespace "
            f"{namespace!r}; create it from a file: kubectl create secret generic "
            f"{secret_name} -n {namespace} --from-file={TOKEN_KEY}=TOKEN_FILE",
            f"then: {apply}"]
    return out


_UPSTREAM = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$")
_LISTEN = re.compile(r"^(unix:/[^\s;{}'\"]+|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9*][A-Za-z0-9.*-]*)"
                     r"(:[0-9]{1,5})?)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def listen_is_local(listen: str) -> bool:
    """Whether an nginx ``listen`` address is reachable from this host only.

    A port alone, ``*`` and ``0.0.0.0`` mean every interface.

    >>> [listen_is_local(x) for x in ("127.0.0.1:8080", "[::1]:80", "localhost:80",
    ...                                "8080", "0.0.0.0:80", "10.0.0.5:80", "unix:/run/x")]
    [True, True, True, False, False, False, True]
    """
    if listen.startswith("unix:"):
        return True
    if listen.isdigit():
        return False
    host = listen[1:listen.index("]")] if listen.startswith("[") else listen.partition(":")[0]
    return is_loopback(host)


def _nginx_path(value: str, what: str) -> str:
    if not value or re.search(r"[\s;{}'\"\\$]", value):
        raise UsageError(f"{what} {value!r}: give a file path without spaces, quotes, "
                         "';', '{', '}', '$' or '\\'")
    return value


def nginx_config(upstreams: Sequence[str], *, routing: str = "least_connections",
                 listen: str = "127.0.0.1:8080", name: str = "hybridnb",
                 tls_cert: str | None = None, tls_key: str | None = None,
                 timeout_s: float = 60.0, pid: str = "/run/nginx-hybridnb.pid",
                 error_log: str = "/var/log/nginx/hybridnb-error.log",
                 temp_dir: str | None = None) -> str:
    """A complete ``nginx.conf`` balancing over ``upstreams`` (``host:port`` each).

    nginx listens on loopback unless it has a TLS certificate: ``listen`` beyond this
    host needs ``tls_cert`` and ``tls_key`` (PEM file paths), and bearer tokens and data
    then travel encrypted. A request goes to another replica only when no replica
    processed it (see the comment in the file); a replica that does not answer within
    ``timeout_s`` gives the client a 504. ``pid``, ``error_log`` and ``temp_dir`` (an
    existing directory for request bodies and responses that do not fit in memory;
    default nginx's own) let nginx run without root.

    >>> "least_conn;" in nginx_config(["10.0.0.5:8080", "10.0.0.6:8080"])
    True
    >>> nginx_config(["10.0.0.5:8080"], listen="0.0.0.0:443")
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: nginx would listen on 0.0.0.0:443 over plain HTTP: ...
    """
    if not upstreams:
        raise UsageError("nginx needs at least one upstream host:port")
    try:
        method = NGINX_METHODS[routing]
    except KeyError:
        raise UsageError(f"nginx cannot route {routing!r}; choose one of "
                         f"{', '.join(NGINX_METHODS)}") from None
    for upstream in upstreams:
        if not _UPSTREAM.match(upstream):
            raise UsageError(f"upstream {upstream!r} is not host:port (e.g. 10.0.0.5:8080)")
    if not _LISTEN.match(listen):
        raise UsageError(f"listen address {listen!r} is not HOST:PORT, PORT or unix:PATH")
    if not _NAME.match(name):
        raise UsageError(f"upstream name {name!r}: letters, digits, '-' and '_' only")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
    if tls_cert is None and not listen_is_local(listen):
        raise UsageError(
            f"nginx would listen on {listen} over plain HTTP: bearer tokens and data would "
            "cross the network in clear. Give a certificate and key (--tls-cert FILE "
            "--tls-key FILE), or listen on loopback (--listen 127.0.0.1:PORT)")
    if timeout_s <= 0:
        raise UsageError(f"timeout_s must be positive, got {timeout_s!r}")
    servers = "\n".join(f"        server {u} max_fails=2 fail_timeout=5s;" for u in upstreams)
    tls = ""
    if tls_cert is not None and tls_key is not None:
        tls = (f"        ssl_certificate {_nginx_path(tls_cert, 'TLS certificate')};\n"
               f"        ssl_certificate_key {_nginx_path(tls_key, 'TLS key')};\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n")
    timeout = f"{timeout_s:g}s"
    temps = ""
    if temp_dir is not None:
        root = _nginx_path(temp_dir, "temp directory").rstrip("/")
        temps = "".join(f"    {kind}_temp_path {root}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# Written by hybridnb: an nginx front for endpoint replicas ({routing}).
worker_processes auto;
pid {_nginx_path(pid, 'pid file')};
error_log {_nginx_path(error_log, 'error log')} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temps}    # A replica's own body limit: nginx answers 413 for more.
    client_max_body_size {ServeSettings().max_body_bytes};
    upstream {name} {{
        {method}
        # A replica that fails twice in 5 s (refused, reset, or 503: nginx counts every
        # case it retries) rests 5 s: a dead or draining one leaves the rotation.
{servers}
        keepalive 64;
    }}
    server {{
        listen {listen}{" ssl" if tls else ""};
{tls}        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_send_timeout {timeout};
            proxy_read_timeout {timeout};
            # Try the next replica, once, for what no replica has processed: a failed
            # or broken connection (a replica gone, a stale keep-alive connection)
            # and a 503 (a draining or full replica refuses before running the model).
            # Inference is a POST, which nginx retries only with non_idempotent; it has
            # no side effects. Never on a timeout: the slow replica may still be working,
            # and sending the request again under load multiplies the load (504 instead).
            proxy_next_upstream error http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def render_nginx(upstreams: Sequence[str], **options: Any) -> Rendering:
    """``nginx.conf`` (:func:`nginx_config`) and how to check and start it."""
    out = Rendering("nginx", files={"nginx.conf": nginx_config(upstreams, **options)})
    out.notes += ["check it: nginx -t -c {out}/nginx.conf",
                  "run it: nginx -c {out}/nginx.conf"]
    return out


def edge_unit(bundle_dir: str, *, port: int = PORT, host: str = "0.0.0.0",
              env_file: str = "/etc/hybridnb/endpoint.env", user: str = "hybridnb",
              serve_args: Sequence[str] = (), agent: Sequence[str] | None = None) -> str:
    """A systemd unit running one replica (``hybridnb serve``) on an edge machine.

    With ``agent`` (the arguments of ``hybridnb edge agent``), it runs the edge agent
    instead: it serves ``bundle_dir`` first, takes new versions from the centre over a
    thin link, switches and rolls back by itself, and buffers metrics while the link is
    down (:mod:`hybridnb.serve.edge`). The token comes from ``env_file``
    (``HYBRIDNB_ENDPOINT_TOKEN=...``), never the unit.

    >>> "ExecStart=hybridnb serve /srv/model" in edge_unit("/srv/model")
    True
    >>> "ExecStart=hybridnb edge agent --state-dir /var/lib/x" in edge_unit(
    ...     "/srv/model", agent=["--state-dir", "/var/lib/x"])
    True
    """
    if agent is None:
        args = " ".join(["hybridnb", "serve", bundle_dir, "--host", host, "--port", str(port),
                         *serve_args])
        what = f"hybridnb endpoint ({bundle_dir})"
    else:
        args = " ".join(["hybridnb", "edge", "agent", *agent, "--bundle", bundle_dir])
        what = f"hybridnb edge agent (first version {bundle_dir})"
    return f"""[Unit]
Description={what}
After=network-online.target
Wants=network-online.target

[Service]
User={user}
EnvironmentFile={"-" if agent is not None else ""}{env_file}
ExecStart={args}
# SIGTERM drains in-flight requests before exit.
KillSignal=SIGTERM
TimeoutStopSec=40
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def render_edge(bundle_dir: str, *, env_file: str = "/etc/hybridnb/endpoint.env",
                site: Any = None, state_dir: str = "/var/lib/hybridnb-edge",
                options_file: str = "/etc/hybridnb/edge-options.json",
                **options: Any) -> Rendering:
    """The systemd unit (:func:`edge_unit`) and how to give it its token.

    ``site`` (a :class:`~hybridnb.config.Site` with an ``edge.agent`` section) renders
    the edge agent's unit instead, with ``edge-options.json`` (the site's rollout policy
    and buffer limits) to install at ``options_file``.
    """
    import json

    agent = getattr(getattr(site, "edge", None), "agent", None)
    if agent is None:
        out = Rendering("edge", files={"hybridnb-endpoint.service": edge_unit(
            bundle_dir, env_file=env_file, **options)})
        out.notes += [f"put {TOKEN_ENV}=... in {env_file} (mode 600, owned by root): the "
                      "replica listens beyond loopback and refuses to start without it",
                      "install it: cp {out}/hybridnb-endpoint.service /etc/systemd/system/ "
                      "&& systemctl enable --now hybridnb-endpoint"]
        return out
    for value, what in ((state_dir, "state directory"), (options_file, "options file")):
        if not value.startswith("/") or re.search(r"\s", value):
            raise UsageError(f"{what} {value!r}: give an absolute path without spaces")
    args = ["--state-dir", state_dir, "--site", site.name, "--control",
            f"{agent.address}:{agent.port}", "--front", f"{agent.front_host}:{agent.front_port}",
            "--options-file", options_file]
    edge_options = site.edge.model_dump(mode="json", include={"link", "rollout", "buffer"})
    out = Rendering("edge", files={
        "hybridnb-edge-agent.service": edge_unit(bundle_dir, env_file=env_file, agent=args,
                                                 **{k: v for k, v in options.items()
                                                    if k == "user"}),
        "edge-options.json": json.dumps(edge_options, indent=2, sort_keys=True) + "\n"})
    out.notes += [
        f"on the edge machine, once: hybridnb edge init --state-dir {state_dir} --host "
        f"{agent.address}; copy its certificate to the centre ({agent.cert or 'edge.agent.cert'}"
        ") and its token file (mode 600, edge.agent.token_file)",
        f"install: cp {{out}}/edge-options.json {options_file}; cp "
        "{out}/hybridnb-edge-agent.service /etc/systemd/system/ && systemctl enable --now "
        "hybridnb-edge-agent",
        f"the front listens on {agent.front_host}:{agent.front_port}"
        + ("" if is_loopback(agent.front_host) else
           f": put {TOKEN_ENV}=... in {env_file} (mode 600): beyond loopback it needs one")]
    return out


def write_rendering(rendering: Rendering, out: str | Path) -> list[Path]:
    """Write ``rendering`` to directory ``out``, all files or none; return their paths.

    The files are written to a new directory next to ``out``, which then replaces it, so
    a failure leaves the old ``out`` (or none) and never half a rendering. ``out`` must
    be absent, empty, or a directory this function wrote before (it holds
    :data:`RENDER_MARKER`): any other directory is refused rather than replaced.
    A rendering with secrets gets a mode-0700 directory.
    """
    import json
    import os
    import shutil
    import tempfile

    from ..fileio import atomic_write_text, replace_dir
    from ..k8s.secrets import write_secret_file

    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} is a file; give a directory")
        entries = sorted(p.name for p in out.iterdir())
        if entries and RENDER_MARKER not in entries:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise UsageError(f"--out {out} holds files hybridnb did not render ({shown}); "
                             "give a new or empty directory (a rendering replaces the "
                             "whole directory)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.render-"))
    try:
        for name, text in rendering.files.items():
            atomic_write_text(tmp / name, text)
        for name, obj in rendering.secrets.items():
            write_secret_file(obj, tmp / name)
        names = sorted([*rendering.files, *rendering.secrets])
        atomic_write_text(tmp / RENDER_MARKER, json.dumps(
            {"target": rendering.target, "files": names}, indent=1) + "\n")
        os.chmod(tmp, 0o700 if rendering.secrets else 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in names]


def notes(rendering: Rendering, out: str | Path) -> list[str]:
    """The rendering's notes with ``{out}`` filled in."""
    return [note.replace("{out}", str(out)) for note in rendering.notes]
