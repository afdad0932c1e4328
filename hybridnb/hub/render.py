"""``hybridnb hub render``: a team's hub configuration, from its ``hybridnb.yaml``.

From the team file (the ``/etc/hybridnb/hybridnb.yaml`` layer, with its ``teams:``
section) it writes:

- ``jupyterhub_config.d/hybridnb.py`` — for a hub configured in Python: the hybridnb
  service, the roles and scopes it needs, the groups, and ``Spawner.group_overrides``
  handing each group its profiles (and the environment that finds the service);
- ``z2jh-values.yaml`` — zero-to-jupyterhub Helm values: ``hub.services``,
  ``hub.loadRoles``, ``singleuser.profileList`` (one profile per site and size a group
  may use: CPU and memory guarantees and limits, ``nvidia.com/gpu``, node selectors and
  tolerations from the site's labels), ``singleuser.extraFiles`` mounting the team file
  at ``/etc/hybridnb/hybridnb.yaml``, and the group filter as ``hub.extraConfig``;
- ``hybridnb-hub-service.yaml`` — the service's Deployment, Service, ConfigMap and claim
  for a zero-to-jupyterhub cluster.

No secret is written: the service's API token is read from an environment variable
(``teams.service.api_token_env``) by the hub's Python config, and from the chart's own
``hub`` Secret (``hub.services.NAME.apiToken``, which the chart generates) in Kubernetes.
The Helm values are checked against the chart's published values schema
(:mod:`hybridnb.hub.schema`) and each profile's pod, as KubeSpawner builds it, against the
Kubernetes schemas (:func:`check_profile_pods`), before anything is written.
"""

from __future__ import annotations

import os
import pprint
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.units import format_bytes
from ..errors import OperationError, UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig, Site
    from ..config.teams import Size, Teams

ADMIN_SCOPE = "custom:hybridnb:admin"
TEAM_PATH = "/etc/hybridnb/hybridnb.yaml"
GPU_RESOURCE = "nvidia.com/gpu"
#: Where single-user pods reach the service in zero-to-jupyterhub: through the proxy
#: (the chart's network policies let user pods reach it, and the path is authenticated).
Z2JH_PROXY = "http://proxy-public"
SERVICE_APP = "hybridnb-hub-service"
#: Keys whose values are secrets: never in a rendered file.
SECRET_KEYS = ("token", "password", "secret", "api_key", "apikey", "private_key")


def yaml_safe_dumper() -> Any:
    import yaml

    return yaml.SafeDumper


def _quantity_cpu(cores: float) -> float:
    return round(float(cores), 3)


def _memory(n: int) -> str:
    # KubeSpawner's mem_limit takes K/M/G/T suffixes (powers of 1024).
    for suffix, size in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def profile(site: Site | None, size_name: str, size: Size, groups: list[str]) -> dict[str, Any]:
    """A KubeSpawner profile for ``size`` on ``site`` (``None``: any node).

    The site's labels select its nodes and are tolerated as taints of the same key and
    value (``key=value:NoSchedule``); a GPU size asks for ``nvidia.com/gpu`` and
    tolerates the GPU taint.
    """
    cpu_guarantee = size.cpu_guarantee if size.cpu_guarantee is not None else size.cpu / 2
    mem_guarantee = (size.memory_guarantee if size.memory_guarantee is not None
                     else size.memory // 2)
    override: dict[str, Any] = {
        "cpu_limit": _quantity_cpu(size.cpu), "cpu_guarantee": _quantity_cpu(cpu_guarantee),
        "mem_limit": _memory(size.memory), "mem_guarantee": _memory(mem_guarantee),
        "environment": {"HYBRIDNB_PROFILE": f"{site.name if site else 'any'}-{size_name}"},
    }
    tolerations: list[dict[str, str]] = []
    if site is not None and site.labels:
        override["node_selector"] = dict(site.labels)
        tolerations += [{"key": k, "operator": "Equal", "value": v, "effect": "NoSchedule"}
                        for k, v in site.labels.items()]
    if size.gpu:
        override["extra_resource_limits"] = {GPU_RESOURCE: str(size.gpu)}
        override["extra_resource_guarantees"] = {GPU_RESOURCE: str(size.gpu)}
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        override["tolerations"] = tolerations
    where = f"on {site.name}" if site is not None else "on any node"
    gpu = f", {size.gpu} GPU" if size.gpu else ""
    return {
        "display_name": f"{size_name} {where}: {size.cpu:g} CPU, {format_bytes(size.memory)}"
                        f"{gpu}",
        "slug": f"{site.name if site else 'any'}-{size_name}",
        "description": (size.description or f"For group(s) {', '.join(groups)}."),
        "kubespawner_override": override,
    }


def group_profiles(config: HybridConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Each group's profiles by slug: one per Kubernetes site and size it may use (per
    size, on any node, when it may use no Kubernetes site)."""
    teams = _teams(config)
    users_of: dict[tuple[str | None, str], list[str]] = {}
    for gname, group in teams.groups.items():
        for key in _profile_keys(config, group.sites, group.sizes):
            users_of.setdefault(key, []).append(gname)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for gname, group in teams.groups.items():
        out[gname] = {}
        for site_name, size_name in _profile_keys(config, group.sites, group.sizes):
            site = config.sites[site_name] if site_name else None
            p = profile(site, size_name, teams.sizes[size_name],
                        users_of[(site_name, size_name)])
            out[gname][p["slug"]] = p
    return out


def _profile_keys(config: HybridConfig, sites: list[str], sizes: list[str]
                  ) -> list[tuple[str | None, str]]:
    k8s = [s for s in sites if s in config.sites and config.sites[s].backend == "kubernetes"]
    where: list[str | None] = list(k8s) or [None]
    return [(site, size) for site in where for size in sizes]


def _teams(config: HybridConfig) -> Teams:
    if config.teams is None:
        raise UsageError("the configuration has no 'teams:' section: add groups, their sites "
                         "and quotas to the team's hybridnb.yaml (see hybridnb.config.teams)")
    return config.teams


def client_url(teams: Teams, *, z2jh: bool = False) -> str:
    """The URL users' hybridnb asks (``$HYBRIDNB_HUB_SERVICE_URL`` in their servers)."""
    name = teams.service.name
    if z2jh:
        return f"{Z2JH_PROXY}/services/{name}"
    return (teams.service.url or f"http://{teams.service.listen}/services/{name}").rstrip("/")


def gateway_services(config: HybridConfig) -> list[str]:
    """Hub services the team's ``gateway`` sites go through (``.../services/NAME``)."""
    import re

    out = []
    for site in config.sites.values():
        if site.backend == "gateway" and site.gateway is not None:
            found = re.search(r"/services/([^/]+)", site.gateway.address)
            if found and found.group(1) not in out:
                out.append(found.group(1))
    return out


def roles(config: HybridConfig) -> list[dict[str, Any]]:
    """The roles the hub needs: users and their servers may use the service (and the
    dask-gateway services of the team's ``gateway`` sites); admins see everyone's usage."""
    teams = _teams(config)
    access = f"access:services!service={teams.service.name}"
    gateways = [f"access:services!service={name}" for name in gateway_services(config)]
    out = [
        {"name": "user", "description": "Standard user privileges, and the hybridnb service",
         "scopes": ["self", access, *gateways]},
        {"name": "server", "description": "Post activity, and ask the hybridnb service",
         "scopes": ["users:activity!user", "access:servers!server", access, *gateways]},
    ]
    if teams.admins:
        out.append({"name": "hybridnb-admin", "description": "See the team's usage",
                    "scopes": [ADMIN_SCOPE, access], "users": list(teams.admins)})
    return out


def _group_overrides(config: HybridConfig, profiles: Mapping[str, Mapping[str, Any]]
                     ) -> dict[str, dict[str, Any]]:
    teams = _teams(config)
    out: dict[str, dict[str, Any]] = {}
    for i, (gname, group) in enumerate(teams.groups.items()):
        override: dict[str, Any] = {"environment": {"HYBRIDNB_TEAM_GROUP": gname}}
        if group.sizes:  # local spawners pass these on as MEM_LIMIT / CPU_LIMIT
            largest = max((teams.sizes[s] for s in group.sizes), key=lambda s: s.memory)
            override["mem_limit"] = _memory(largest.memory)
            override["cpu_limit"] = _quantity_cpu(largest.cpu)
        out[f"{50 + i:03d}-hybridnb-{gname}"] = {"groups": [gname],
                                                  "spawner_override": override}
    return out


def _snippet(data: dict[str, Any], *, header: str) -> str:
    literal = pprint.pformat(data, width=96, sort_dicts=False)
    return f'''# {header}
# Generated by `hybridnb hub render`: edit the team's hybridnb.yaml and render again.
"""hybridnb for this hub: its service, roles and groups, and each group's profiles."""
import os

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)
HYBRIDNB = {literal}

_service = dict(HYBRIDNB["service"])
if _service.pop("api_token_env", None):
    # The token is never written down: the hub's environment holds it.
    _service["api_token"] = os.environ[HYBRIDNB["token_env"]]
if _service.get("name"):
    c.JupyterHub.services.append(_service)
c.JupyterHub.load_roles.extend(HYBRIDNB["roles"])
c.JupyterHub.custom_scopes.update(HYBRIDNB["custom_scopes"])
c.JupyterHub.load_groups.update(HYBRIDNB["groups"])
if HYBRIDNB["allowed_users"]:
    c.Authenticator.allowed_users.update(HYBRIDNB["allowed_users"])
c.Spawner.environment.update(HYBRIDNB["environment"])

if HYBRIDNB["profiles"]:
    # KubeSpawner: the form lists the profiles of the user's groups only.
    def _hybridnb_profiles(spawner):
        groups = {{g.name for g in spawner.user.groups}}
        seen = {{}}
        for group, profiles in HYBRIDNB["profiles"].items():
            if group in groups:
                seen.update(profiles)
        return [seen[slug] for slug in sorted(seen)]

    c.KubeSpawner.profile_list = _hybridnb_profiles

_configured = c.Spawner.group_overrides
_configured = dict(_configured) if isinstance(_configured, dict) else {{}}


def _hybridnb_group_overrides(spawner):
    # Each group's profiles as a dict by slug: dicts merge, so a user in several groups
    # may pick any of theirs, and the spawn refuses another group's slug. Only
    # KubeSpawner has profiles; other spawners get the group's limits and environment.
    out = dict(_configured)
    for key, override in HYBRIDNB["group_overrides"].items():
        spawner_override = dict(override["spawner_override"])
        if hasattr(spawner, "profile_list"):
            for group in override["groups"]:
                spawner_override.setdefault("profile_list", {{}}).update(
                    HYBRIDNB["profiles"].get(group, {{}}))
        out[key] = {{"groups": override["groups"], "spawner_override": spawner_override}}
    return out


c.Spawner.group_overrides = _hybridnb_group_overrides
'''


def hub_snippet(config: HybridConfig, *, team_path: str = TEAM_PATH) -> str:
    """``jupyterhub_config.d/hybridnb.py`` for a hub configured in Python."""
    teams = _teams(config)
    svc = teams.service
    host, _, port = svc.listen.rpartition(":")
    service: dict[str, Any] = {
        "name": svc.name, "url": f"http://{host}:{port}", "display": True,
        "info": {"description": "hybridnb: the team's ledger and quotas"},
        "oauth_client_allowed_scopes": [ADMIN_SCOPE],
    }
    if svc.managed:
        service["command"] = ["hybridnb", "hub-service", "--listen", svc.listen]
        service["environment"] = {"HYBRIDNB_SYSTEM_CONFIG": team_path}
    else:
        service["api_token_env"] = svc.api_token_env
    data = {
        "service": service, "token_env": svc.api_token_env, "roles": roles(config),
        "custom_scopes": {ADMIN_SCOPE: {"description": "See every user's usage in the "
                                        "hybridnb service's admin page"}},
        "groups": {g: {"users": list(group.members)} for g, group in teams.groups.items()},
        "allowed_users": teams.members(),
        "environment": {"HYBRIDNB_HUB_SERVICE_URL": client_url(teams),
                        "HYBRIDNB_SYSTEM_CONFIG": team_path},
        "group_overrides": _group_overrides(config, {}),
        "profiles": group_profiles(config),
    }
    _no_secrets(data, "jupyterhub_config.d/hybridnb.py")
    return _snippet(data, header="hybridnb team configuration for JupyterHub")


def helm_values(config: HybridConfig, team_file: Mapping[str, Any]) -> dict[str, Any]:
    """zero-to-jupyterhub values (to merge into the hub's own with ``-f``)."""
    teams = _teams(config)
    svc = teams.service
    _, _, port = svc.listen.rpartition(":")
    by_group = group_profiles(config)
    union: dict[str, dict[str, Any]] = {}
    for profiles in by_group.values():
        union.update(profiles)
    extra = {
        "service": {}, "token_env": "", "roles": [], "custom_scopes": {}, "groups": {},
        "allowed_users": [], "environment": {},
        "group_overrides": _group_overrides(config, by_group), "profiles": by_group,
    }
    values: dict[str, Any] = {
        "hub": {
            "services": {svc.name: {
                "url": f"http://{SERVICE_APP}:{port}", "display": True,
                "oauth_client_allowed_scopes": [ADMIN_SCOPE],
                "info": {"description": "hybridnb: the team's ledger and quotas"},
            }},
            "loadRoles": {r["name"]: {k: v for k, v in r.items() if k != "name"}
                          for r in roles(config)},
            "config": {"JupyterHub": {
                "custom_scopes": {ADMIN_SCOPE: {"description": "See every user's usage in "
                                                "the hybridnb service's admin page"}},
                "load_groups": {g: {"users": list(group.members)}
                                for g, group in teams.groups.items()},
            }},
            "extraConfig": {"hybridnb": _snippet(extra, header="hybridnb group profiles")},
        },
        "singleuser": {
            "profileList": [union[slug] for slug in sorted(union)],
            "extraFiles": {"hybridnb-team": {"mountPath": TEAM_PATH, "data": dict(team_file)}},
            "extraEnv": {"HYBRIDNB_HUB_SERVICE_URL": client_url(teams, z2jh=True)},
        },
        "proxy": {"chp": {"networkPolicy": {"egress": [{
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_APP}}}],
            "ports": [{"port": int(port), "protocol": "TCP"}]}]}}},
    }
    if teams.image:
        name, _, tag = teams.image.rpartition(":")
        values["singleuser"]["image"] = {"name": name or teams.image, "tag": tag or "latest"}
    _no_secrets(values, "z2jh-values.yaml")
    return values


def service_manifests(config: HybridConfig, team_text: str) -> list[dict[str, Any]]:
    """The service's ConfigMap, PersistentVolumeClaim, Deployment and Service (z2jh)."""
    from ..k8s import standard_labels
    from ..k8s.pods import container_security_context, pod_security_context

    teams = _teams(config)
    svc = teams.service
    _, _, port = svc.listen.rpartition(":")
    labels = standard_labels(extra={"app.kubernetes.io/name": SERVICE_APP})
    pod_labels = {**labels, "hub.jupyter.org/network-access-hub": "true"}
    meta = {"name": SERVICE_APP, "labels": labels}
    env = [
        {"name": "JUPYTERHUB_API_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "hub", "key": f"hub.services.{svc.name}.apiToken"}}},
        {"name": "JUPYTERHUB_API_URL", "value": "http://hub:8081/hub/api"},
        {"name": "JUPYTERHUB_SERVICE_NAME", "value": svc.name},
        {"name": "JUPYTERHUB_SERVICE_PREFIX", "value": f"/services/{svc.name}/"},
        {"name": "HYBRIDNB_SYSTEM_CONFIG", "value": TEAM_PATH},
        {"name": "HYBRIDNB_HOME", "value": "/var/lib/hybridnb"},
    ]
    container = {
        "name": "hub-service", "image": svc.image,
        "command": ["hybridnb", "hub-service", "--listen", f"0.0.0.0:{port}"],
        "ports": [{"name": "http", "containerPort": int(port)}], "env": env,
        "readinessProbe": {"httpGet": {"path": f"/services/{svc.name}/api/health",
                                       "port": "http"}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                      "limits": {"memory": "512Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "team", "mountPath": "/etc/hybridnb", "readOnly": True},
                         {"name": "ledger", "mountPath": "/var/lib/hybridnb"}],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": "hybridnb-team"},
         "data": {"hybridnb.yaml": team_text}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {**meta, "name": "hybridnb-ledger"},
         "spec": {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1, "strategy": {"type": "Recreate"},  # one writer of the ledger
            "selector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_APP}},
            "template": {"metadata": {"labels": pod_labels}, "spec": {
                "securityContext": pod_security_context(), "containers": [container],
                "volumes": [{"name": "team", "configMap": {"name": "hybridnb-team"}},
                            {"name": "ledger", "persistentVolumeClaim": {
                                "claimName": "hybridnb-ledger"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": {"app.kubernetes.io/name": SERVICE_APP},
            "ports": [{"name": "http", "port": int(port), "targetPort": "http"}]}},
    ]


def _no_secrets(data: Any, where: str, path: str = "") -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            lowered = str(key).lower()
            if (any(word in lowered for word in SECRET_KEYS) and isinstance(value, str)
                    and value and not lowered.endswith(("_env", "env"))):
                raise UsageError(f"{where}: {path}{key} would hold a secret value; keep "
                                 "secrets out of the team's hybridnb.yaml (use an "
                                 "environment variable or a Kubernetes Secret)")
            _no_secrets(value, where, f"{path}{key}.")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _no_secrets(item, where, f"{path}{i}.")


def render(team_file: str | Path, out_dir: str | Path, *, team_path: str = TEAM_PATH,
           check: bool = True) -> list[Path]:
    """Render the hub's configuration for the team file ``team_file`` into ``out_dir``.

    Everything is checked before anything is written (``check``): the team file like
    any hybridnb configuration, the Helm values against the z2jh values schema, each
    profile's pod and the service's manifests against the Kubernetes schemas.

    Returns the paths written.

    >>> render("environments/hub/hybridnb.yaml", "/tmp/hub")  # doctest: +SKIP
    [PosixPath('/tmp/hub/jupyterhub_config.d/hybridnb.py'), ...]
    """
    import yaml

    from ..config import check_file
    from ..fileio import atomic_write_text
    from ..k8s import ManifestError, validate_manifest
    from .schema import check_values

    team_file = Path(team_file)
    config = check_file(team_file)
    _teams(config)
    text = team_file.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    _no_secrets(raw, str(team_file))
    snippet = hub_snippet(config, team_path=team_path)
    values = helm_values(config, raw)
    manifests = service_manifests(config, text)
    if check:
        check_values(values)
        problems = [p for m in manifests for p in validate_manifest(m)]
        if problems:
            raise ManifestError(problems)
        check_profile_pods(config)
    out = Path(out_dir)
    written = [
        atomic_write_text(out / "jupyterhub_config.d" / "hybridnb.py", snippet),
        atomic_write_text(out / "z2jh-values.yaml", "# Generated by `hybridnb hub render`: "
                          "helm upgrade --install ... -f z2jh-values.yaml\n"
                          + yaml.dump(values, Dumper=_BlockDumper, sort_keys=False)),
        atomic_write_text(out / "hybridnb-hub-service.yaml", "# Generated by `hybridnb hub "
                          "render`: kubectl apply -f (in the hub's namespace)\n"
                          + yaml.safe_dump_all(manifests, sort_keys=False)),
    ]
    return written


def profile_pods(config: HybridConfig) -> dict[str, dict[str, Any]]:
    """The pod KubeSpawner makes for each profile, by ``GROUP/SLUG``.

    Built offline by :mod:`hybridnb.hub.kubepods` in a child process, whose kubeconfig
    names a cluster nobody runs: KubeSpawner reads one when it is made, and building a
    pod manifest never contacts it (nor the user's own clusters).
    """
    import json
    import subprocess
    import sys
    import tempfile

    profiles = group_profiles(config)
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "config"
        kubeconfig.write_text(_FAKE_KUBECONFIG)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["KUBECONFIG"] = str(kubeconfig)
        proc = subprocess.run([sys.executable, "-m", "hybridnb.hub.kubepods"],
                              input=json.dumps(profiles), capture_output=True, text=True,
                              env=env, timeout=300)
    if proc.returncode != 0:
        raise OperationError("KubeSpawner could not build the profiles' pods: "
                             + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    pods: dict[str, dict[str, Any]] = json.loads(proc.stdout)
    return pods


def check_profile_pods(config: HybridConfig) -> dict[str, dict[str, Any]]:
    """:func:`profile_pods`, each validated (a :class:`~hybridnb.k8s.ManifestError`
    lists every problem)."""
    from ..k8s import ManifestError, validate_manifest
    from ..k8s.names import metadata_problems
    from ..k8s.problems import ManifestProblem

    pods = profile_pods(config)
    problems = [p for pod in pods.values() for p in validate_manifest(pod)]
    for key, pod in pods.items():
        # The API server checks node selectors as labels; the schemas do not.
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        for p in metadata_problems({"metadata": {"name": "x", "labels": selector}}, "Pod",
                                   f"Pod/{key}"):
            problems.append(ManifestProblem(p.resource, p.path.replace(
                "$.metadata.labels", "$.spec.nodeSelector"), p.message))
    if problems:
        raise ManifestError(problems)
    return pods


class _BlockDumper(yaml_safe_dumper()):  # type: ignore[misc]
    """Multi-line strings (the Python snippet) as readable ``|`` blocks."""


def _block(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _block)


# A kubeconfig that names a cluster nobody runs: KubeSpawner reads it at construction,
# and building a pod manifest never contacts it.
_FAKE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: offline, user: {token: "not-a-real-token"}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""
