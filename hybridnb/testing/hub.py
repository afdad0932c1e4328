"""A real JupyterHub on 127.0.0.1 with hybridnb's service and a dask-gateway (tests/hub,
benchmarks/bench_hub.py).

The hub runs as its own process (``jupyterhub -f``), with configurable-http-proxy from
npm (``make hub-proxy`` puts it in build/node), the dummy authenticator,
``SimpleLocalProcessSpawner`` (each user's home under the test's directory), sqlite, and
the ``jupyterhub_config.d`` snippet that ``hybridnb hub render`` writes for the team
file below. The hybridnb service and the gateway start before the hub: a service whose
URL does not answer yet delays the hub's ``/`` by ~27 s.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ..processes import free_port, tail
from ..waiting import Ended, wait_until

ROOT = Path(__file__).resolve().parents[2]  # the checkout (PYTHONPATH of the servers)
CHP = ROOT / "build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
USERS = ("alice", "bob", "carol")


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None,
              log: Path | None = None, ok: int = 500) -> None:
    try:
        wait_until(lambda: httpx.get(url, timeout=2.0).status_code < ok, timeout=timeout,
                   ignore=(httpx.HTTPError,), what=url,
                   alive=None if proc is None else lambda: proc.poll() is None)
    except Ended:
        raise RuntimeError(f"process for {url} exited {proc and proc.returncode}:\n"
                           + (tail(log, 60) if log else "")) from None
    except TimeoutError:
        raise RuntimeError(f"{url} did not answer within {timeout:g} s\n"
                           + (tail(log, 60) if log else "")) from None


def team_file(ports: dict[str, int]) -> dict[str, Any]:
    """Two groups, three users; alice (research) may not handle pii, bob (clinical) may."""
    return {
        "sites": {
            "local": {"tier": "private", "capacity": {"cpu": 2, "memory": "4GiB"},
                      "classifications": ["public", "internal", "pii"],
                      "local": {"processes": True}},
            "shared-dask": {
                "tier": "private", "backend": "gateway",
                "capacity": {"cpu": 4, "memory": "8GiB"},
                "classifications": ["public", "internal"],
                "gateway": {
                    "address": f"http://127.0.0.1:{ports['proxy']}/services/dask-gateway",
                    "proxy_address": f"gateway://127.0.0.1:{ports['gateway']}",
                    "cores": 1, "memory": "512MiB"}},
        },
        "datasets": {
            "patients": {"site": "local", "path": "/data/patients.parquet",
                         "classification": "pii"},
            "digits": {"site": "local", "path": "builtin:digits", "format": "builtin",
                       "classification": "public"},
        },
        "teams": {
            "contact": "#ml-platform",
            "admins": ["carol"],
            "service": {"listen": f"127.0.0.1:{ports['service']}", "managed": False,
                        "url": f"http://127.0.0.1:{ports['service']}/services/hybridnb"},
            "sizes": {"small": {"cpu": 1, "memory": "2GiB"}},
            "groups": {
                "research": {"members": ["alice", "carol"],
                             "sites": ["local", "shared-dask"],
                             "classifications": ["public", "internal"], "sizes": ["small"],
                             "per_user": {"clusters": 1, "workers": 2}},
                "clinical": {"members": ["bob"], "sites": ["local"],
                             "classifications": ["public", "internal", "pii"],
                             "per_user": {"clusters": 2}},
            },
        },
    }


@dataclass
class Hub:
    base: Path
    ports: dict[str, int]
    team_path: Path
    admin_token: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['service']}/services/hybridnb"

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return httpx.request(method, f"{self.url}/hub/api{path}", headers=headers,
                             timeout=30.0, **kw)

    def user_api(self, user: str, method: str, path: str, *, token: str | None = None,
                 **kw: Any) -> httpx.Response:
        """A call to ``user``'s hybridnb routes (``/user/NAME/hybridnb/PATH``)."""
        headers = {"Authorization": f"token {token or self.tokens[user]}"}
        return httpx.request(method, f"{self.url}/user/{user}/hybridnb/{path}",
                             headers=headers, timeout=120.0, **kw)

    def service(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.request(method, f"{self.service_url}/{path}", headers=headers,
                             timeout=30.0, **kw)

    def user_env(self, user: str) -> dict[str, str]:
        """What a process of ``user``'s server sees (for library calls from the test)."""
        return {"JUPYTERHUB_API_TOKEN": self.tokens[user], "JUPYTERHUB_USER": user,
                "HYBRIDNB_SYSTEM_CONFIG": str(self.team_path),
                "HYBRIDNB_HUB_SERVICE_URL": self.service_url,
                "HYBRIDNB_HOME": str(self.base / "home" / user / ".local/share/hybridnb")}

    # -- processes --------------------------------------------------------------------

    def start_service(self) -> None:
        log = self.base / "service.log"
        cmd = [sys.executable, "-m", "hybridnb", "hub-service"]
        with log.open("ab") as out:  # the child keeps its own descriptor
            self.procs["service"] = subprocess.Popen(
                cmd, env=self.service_env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_http(f"{self.service_url}/api/health", 60, self.procs["service"], log)

    def start_gateway(self, env: dict[str, str]) -> None:
        gw_conf = self.base / "dask_gateway_config.py"
        gw_conf.write_text(_gateway_config(self))
        gw_log = self.base / "gateway.log"
        with gw_log.open("ab") as out:
            self.procs["gateway"] = subprocess.Popen(
                [str(Path(sys.executable).with_name("dask-gateway-server")), "-f",
                 str(gw_conf)],
                env={**env, "JUPYTERHUB_API_TOKEN": self.service_env["GATEWAY_TOKEN"]},
                cwd=self.base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.ports['gateway']}/services/dask-gateway/api/"
                  "health", 60, self.procs["gateway"], gw_log)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def start_server(self, user: str) -> None:
        r = self.api("POST", f"/users/{user}/server")
        if r.status_code not in (201, 202):
            raise RuntimeError(f"starting {user}'s server: {r.status_code} {r.text}")
        def ready() -> bool:
            server = (self.api("GET", f"/users/{user}").json().get("servers") or {}).get("")
            return bool(server and server.get("ready"))

        try:
            wait_until(ready, timeout=120, interval=0.5, what=f"{user}'s server")
        except TimeoutError:
            raise RuntimeError(f"{user}'s server did not become ready:\n"
                               + tail(self.base / "hub.log", 80)) from None


def _hub_config(hub: Hub, snippet: Path, gateway: bool) -> str:
    p = hub.ports
    jupyter_config = hub.base / "jupyter-config"
    return f"""
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {p['proxy']}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {p['hub']}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{p['proxy_api']}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{hub.base}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{hub.base}/cookie_secret"
c.JupyterHub.pid_file = "{hub.base}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{hub.base}/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root", "--ServerApp.ip=127.0.0.1"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {{"PYTHONPATH": {str(ROOT)!r},
                          "JUPYTER_CONFIG_PATH": {str(jupyter_config)!r}}}
c.JupyterHub.services = [{{"name": "test-admin", "api_token": {hub.admin_token!r}}}]
if {gateway!r}:
    c.JupyterHub.services.append({{"name": "dask-gateway",
                                   "url": "http://127.0.0.1:{p['gateway']}",
                                   "api_token": {hub.service_env['GATEWAY_TOKEN']!r}}})
c.JupyterHub.load_roles = [{{"name": "test-admin", "services": ["test-admin"],
    "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "list:users",
               "read:users", "access:servers"]}}]
load_subconfig({str(snippet)!r})
"""


def _gateway_config(hub: Hub) -> str:
    p = hub.ports
    dask = str(Path(sys.executable).with_name("dask"))
    return f"""
from dask_gateway_server.options import Float, Integer, Options
c = get_config()  # noqa
c.DaskGateway.address = "127.0.0.1:{p['gateway_api']}"
c.Proxy.address = "127.0.0.1:{p['gateway']}"
c.Proxy.prefix = "/services/dask-gateway"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = "http://127.0.0.1:{p['hub']}/hub/api"
c.JupyterHubAuthenticator.jupyterhub_service_name = "dask-gateway"
c.LocalClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.LocalClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.LocalClusterConfig.cluster_start_timeout = 120
c.LocalClusterConfig.worker_start_timeout = 120
c.LocalClusterConfig.idle_timeout = 600
c.UnsafeLocalBackend.clusters_directory = "{hub.base}/gateway-clusters"
c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max=2, label="Cores per worker"),
    Float("worker_memory", default=0.5, min=0.25, max=2, label="Memory per worker (GiB)"),
    handler=lambda options: {{"worker_cores": options.worker_cores,
                              "worker_memory": int(options.worker_memory * 2**30)}},
)
"""


@contextmanager
def running_hub(base: Path, *, servers: tuple[str, ...] = ("alice", "bob"),
                gateway: bool = True) -> Iterator[Hub]:
    """alice (research), bob (clinical), carol (research, hybridnb admin) on a real hub
    in ``base``; ``servers`` get a running single-user server with hybridnb's
    extension; the hybridnb service (and a dask-gateway), all on 127.0.0.1."""
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run 'make "
                           "hub-proxy' (npm install into build/node)")
    ports = {k: free_port() for k in ("proxy", "proxy_api", "hub", "service", "gateway",
                                      "gateway_api")}
    team = base / "team" / "hybridnb.yaml"
    team.parent.mkdir()
    team.write_text(yaml.safe_dump(team_file(ports), sort_keys=False))
    hub = Hub(base=base, ports=ports, team_path=team, admin_token=secrets.token_hex(16))
    (base / "jupyter-config" / "jupyter_server_config.d").mkdir(parents=True)
    shutil.copy(ROOT / "hybridnb" / "jupyter" / "config" / "hybridnb.json",
                base / "jupyter-config" / "jupyter_server_config.d" / "hybridnb.json")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "HYBRIDNB_", "KUBE"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(base / "admin-home"))
    service_token = secrets.token_hex(16)
    render = subprocess.run(
        [sys.executable, "-m", "hybridnb", "hub", "render", "--team", str(team),
         "--out", str(base / "render"), "--team-path", str(team)],
        env=env, capture_output=True, text=True, timeout=300)
    if render.returncode != 0:
        raise RuntimeError(f"hybridnb hub render failed: {render.stderr}")
    hub.service_env = {**env, "HYBRIDNB_SYSTEM_CONFIG": str(team),
                       "HYBRIDNB_HUB_SERVICE_TOKEN": service_token,
                       "JUPYTERHUB_API_URL": f"http://127.0.0.1:{ports['hub']}/hub/api",
                       "HYBRIDNB_HOME": str(base / "service-home"),
                       "GATEWAY_TOKEN": secrets.token_hex(16)}
    try:
        hub.start_service()
        if gateway:
            hub.start_gateway(env)
        conf = base / "jupyterhub_config.py"
        conf.write_text(_hub_config(hub, base / "render" / "jupyterhub_config.d" /
                                    "hybridnb.py", gateway))
        hub_log = base / "hub.log"
        with hub_log.open("ab") as out:
            hub.procs["hub"] = subprocess.Popen(
                [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(conf)],
                env={**env, "HYBRIDNB_HUB_SERVICE_TOKEN": service_token}, cwd=base,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{hub.url}/hub/api/", 90, hub.procs["hub"], hub_log, ok=300)
        for user in USERS:
            r = hub.api("POST", f"/users/{user}/tokens", json={"note": "tests"})
            r.raise_for_status()
            hub.tokens[user] = r.json()["token"]
        for user in servers:
            hub.start_server(user)
        yield hub
    finally:
        for user in servers:
            try:
                hub.api("DELETE", f"/users/{user}/server")
            except httpx.HTTPError:
                pass
        time.sleep(1)
        for name in ("hub", "gateway", "service"):
            hub.stop(name)
        _kill_leftovers(base)


def _kill_leftovers(base: Path) -> None:
    """Keepers and gateway clusters the tests started (processes under the test's dir)."""
    import psutil

    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            if proc.pid == me:
                continue
            env = proc.info.get("environ") or {}
            cmd = " ".join(proc.info.get("cmdline") or [])
            if str(base) in env.get("HOME", "") or str(base) in cmd:
                proc.kill()
        except (psutil.Error, OSError):
            continue


def as_json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except json.JSONDecodeError:
        return {"text": r.text}
