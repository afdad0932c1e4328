"""Ask the team's hub service before starting anything, and tell it when things stop.

Every start in hybridnb — a cluster, a training run, an endpoint, a notebook job — calls
:func:`admit` first and releases the :class:`Lease` it gets when the thing stops.

- **Outside a hub** (no ``$JUPYTERHUB_API_TOKEN``, or no service URL configured: the
  embedded default) :func:`admit` returns :data:`NO_LEASE` at once, without reading any
  configuration or opening any connection.
- **Inside a hub** it asks the hub service (``teams.service.url``, or
  ``$HYBRIDNB_HUB_SERVICE_URL``, which the hub sets), authenticated with the server's
  own JupyterHub token. Beyond a quota it raises :class:`QuotaError` at once, naming
  the quota, its value and who to ask (CLI exit 2, REST 409).
- **When the service is down** running work goes on untouched (nothing here ever stops
  anything); new starts are refused with :class:`HubUnavailable`, or, where
  ``teams.service.on_outage: local-only``, allowed on ``local``-backend sites only.

Leases whose holder process vanished without releasing them (a killed kernel) are
released by :func:`reap`, which a refused start runs before asking once more.

>>> lease = admit("cluster", "local", {"workers": 2}, environ={})   # outside a hub
>>> lease is NO_LEASE, lease.release()
(True, None)
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ..errors import FieldError, OperationError, UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig

logger = logging.getLogger(__name__)

TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
URL_ENV = "HYBRIDNB_HUB_SERVICE_URL"
KINDS = ("cluster", "run", "endpoint", "job")
#: Size keys a start reports (what quotas count).
SIZE_KEYS = ("workers", "cpus", "gpus", "memory_bytes")


class QuotaError(FieldError):
    """A start beyond a quota (or on a site the user's groups may not use).

    ``quota`` names it (``clusters``, ``gpu_hours_per_day``, ``sites``…), ``limit`` is
    its value, ``contact`` who to ask. Surfaces answer 409 (REST) or exit 2 (CLI).
    """

    def __init__(self, message: str, *, quota: str | None = None, limit: Any = None,
                 contact: str | None = None):
        super().__init__(message, field="site" if quota == "sites" else None,
                         reason="conflict")
        self.quota, self.limit, self.contact = quota, limit, contact


class HubUnavailable(OperationError):
    """The hub service cannot be reached, so a new start is refused (exit 1, REST 500)."""


@dataclass
class Lease:
    """Permission to run one thing, recorded in the team's ledger until released."""

    id: str | None
    kind: str
    site: str
    name: str | None = None
    size: dict[str, float] = field(default_factory=dict)
    user: str | None = None
    group: str | None = None
    url: str | None = None  # the service that granted it; None: nothing to report
    offline: bool = False  # granted locally while the service was down (local-only)
    warnings: list[str] = field(default_factory=list)
    _released: bool = field(default=False, repr=False)

    @property
    def recorded(self) -> bool:
        """Whether the ledger holds it (so stopping must be reported)."""
        return self.id is not None and self.url is not None

    def ref(self) -> dict[str, str] | None:
        """What another process needs to release it (:func:`release_ref`)."""
        return {"id": str(self.id), "url": str(self.url)} if self.recorded else None

    def release(self, status: str = "stopped") -> None:
        """Report that the thing stopped (``stopped``, ``failed``, ``succeeded``, ``lost``).

        Never raises: stopping work must not fail because the hub is away (the service's
        reaper and :func:`reap` catch what was not reported).
        """
        if self._released or not self.recorded:
            return
        self._released = True
        release_ref(self.ref(), status)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> None:
        self.release("failed" if exc is not None else "stopped")


#: What :func:`admit` returns outside a hub: nothing recorded, nothing to report.
NO_LEASE = Lease(id=None, kind="", site="")


def in_hub(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs inside a hub (it holds a JupyterHub API token)."""
    env = os.environ if environ is None else environ
    return bool(env.get(TOKEN_ENV))


def cluster_size(n_workers: int | None, threads_per_worker: int | None,
                 adapt: Any = None) -> dict[str, float]:
    """What a cluster start counts against quotas: its (maximum) workers and cores.

    Unknown sizes count as one worker of one thread.

    >>> cluster_size(4, 2), cluster_size(None, None, {"minimum": 1, "maximum": 6})
    ({'workers': 4, 'cpus': 8}, {'workers': 6, 'cpus': 6})
    """
    workers = n_workers if n_workers is not None else 1
    if isinstance(adapt, Mapping) and adapt.get("maximum") is not None:
        workers = max(workers, int(adapt["maximum"]))
    elif isinstance(adapt, (list, tuple)) and len(adapt) == 2:
        workers = max(workers, int(adapt[1]))
    return {"workers": workers, "cpus": workers * (threads_per_worker or 1)}


def admit(kind: str, site: str, size: Mapping[str, float] | None = None, *,
          name: str | None = None, config: HybridConfig | None = None,
          environ: Mapping[str, str] | None = None) -> Lease:
    """Ask the hub service for permission to start a ``kind`` on ``site``.

    Parameters
    ----------
    kind:
        ``cluster``, ``run``, ``endpoint`` or ``job``.
    site:
        The site (sites of a hybrid cluster joined by ``+``).
    size:
        ``workers``, ``cpus``, ``gpus``, ``memory_bytes`` it will use.
    name:
        Its name; asking twice for the same active name returns the same lease (a
        sidebar that asks before handing the start to the cluster keeper).

    Raises
    ------
    QuotaError
        Beyond a quota, or on a site the user's groups may not use.
    HubUnavailable
        The service is down and the team refuses starts then.

    Examples
    --------
    >>> admit("run", "local", {"cpus": 2}, environ={}) is NO_LEASE
    True
    """
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV)
    if not token:  # outside a hub: the embedded default costs nothing
        return NO_LEASE
    if kind not in KINDS:
        raise UsageError(f"admit: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    url = env.get(URL_ENV)
    service = None
    if config is not None or not url:
        config = config if config is not None else _load_config()
        service = config.teams.service if config.teams is not None else None
        url = url or (service.url if service is not None else None)
    if not url:
        return NO_LEASE  # a hub without hybridnb's service: nothing to ask
    body = {"kind": kind, "site": site, "name": name,
            "size": {k: v for k, v in (size or {}).items() if k in SIZE_KEYS and v},
            **_holder()}
    timeout = service.timeout if service is not None else 2.0
    for attempt in range(2):
        try:
            status, answer = _client(url, token, timeout).request("POST", "/api/leases", body)
        except OSError as exc:
            return _outage(kind, site, name, body["size"], url, exc, config)
        if status == 201:
            lease = Lease(id=answer["id"], kind=kind, site=site, name=name,
                          size=dict(answer.get("size") or {}), user=answer.get("user"),
                          group=answer.get("group"), url=url,
                          warnings=list(answer.get("warnings") or []))
            for warning in lease.warnings:
                logger.warning("%s", warning)
            return lease
        if status == 409 and attempt == 0 and reap(answer.get("active") or [], url, token):
            continue  # something of ours had vanished: ask once more
        if status == 409:
            raise QuotaError(str(answer.get("error")), quota=answer.get("quota"),
                             limit=answer.get("limit"), contact=answer.get("contact"))
        if status in (401, 403):
            raise OperationError(
                f"the hub service at {url} refused this server's token ({status}: "
                f"{answer.get('error', '')}): restart your server from the hub's home page")
        if status >= 500:
            return _outage(kind, site, name, body["size"], url,
                           OSError(f"HTTP {status}: {answer.get('error', '')}"), config)
        raise UsageError(f"the hub service refused the start: {answer.get('error', status)}")
    raise AssertionError("unreachable")  # pragma: no cover


def release_ref(ref: Mapping[str, str] | None, status: str = "stopped",
                environ: Mapping[str, str] | None = None) -> None:
    """Release a lease by its :meth:`Lease.ref` (from another process); never raises."""
    if not ref or not ref.get("id") or not ref.get("url"):
        return
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV)
    if not token:
        return
    path = f"/api/leases/{quote(str(ref['id']), safe='')}?status={quote(status)}"
    try:
        code, answer = _client(str(ref["url"]), token, 2.0).request("DELETE", path)
    except OSError as exc:
        logger.warning("could not tell the hub service that %s stopped (%s); its reaper "
                       "will notice", ref["id"], exc)
        return
    if code >= 400 and code != 404:
        logger.warning("the hub service did not take the stop of %s: %s %s", ref["id"], code,
                       answer.get("error", ""))


def reap(active: list[Mapping[str, Any]], url: str, token: str) -> int:
    """Release leases held by processes of this host that are gone; return how many.

    ``active`` is the user's active leases as the service lists them (each with the
    ``host``, ``pid`` and ``create_time`` of the process that asked).
    """
    from ..state import ProcessRef

    here, gone = socket.gethostname(), 0
    for lease in active:
        if lease.get("host") != here or not lease.get("pid"):
            continue
        holder = ProcessRef(pid=int(lease["pid"]), create_time=lease.get("create_time"))
        if not holder.alive():
            release_ref({"id": str(lease["id"]), "url": url}, "lost",
                        environ={TOKEN_ENV: token})
            gone += 1
    return gone


_holders: dict[int, dict[str, Any]] = {}


def _holder() -> dict[str, Any]:
    """This process, as the reaper recognises it (its start time tells a recycled pid)."""
    pid = os.getpid()  # a fork is another holder
    if pid not in _holders:
        import psutil

        try:
            created: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            created = None
        _holders[pid] = {"host": socket.gethostname(), "pid": pid, "create_time": created}
    return dict(_holders[pid])


def _outage(kind: str, site: str, name: str | None, size: dict[str, float], url: str,
            exc: Exception, config: HybridConfig | None) -> Lease:
    config = config if config is not None else _load_config()
    teams = config.teams
    policy = teams.service.on_outage if teams is not None else "refuse"
    contact = teams.contact if teams is not None else "your JupyterHub admin"
    local = all(s in config.sites and config.sites[s].backend == "local"
                for s in site.split("+"))
    if policy == "local-only" and local:
        logger.warning("the hub service at %s is unreachable (%s): starting %s on local "
                       "site %s without it (teams.service.on_outage: local-only)", url,
                       exc, kind, site)
        return Lease(id=None, kind=kind, site=site, name=name, size=size, offline=True)
    only = (" Only local sites may start while it is away (on_outage: local-only)."
            if policy == "local-only" else "")
    raise HubUnavailable(
        f"the team's hub service at {url} is unreachable ({exc}): new {kind}s are refused "
        f"until it is back; what runs keeps running.{only} Ask {contact}")


def _load_config() -> HybridConfig:
    from ..config import load_config

    return load_config()


# -- a small keep-alive HTTP client: a start pays one loopback round trip -----------------


class _Client:
    def __init__(self, url: str, token: str, timeout: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"hub service URL {url!r}: expected http(s)://HOST[:PORT]/...")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.base = parts.path.rstrip("/")
        self.token, self.timeout = token, timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (http.client.HTTPSConnection if self.scheme == "https"
                   else http.client.HTTPConnection)
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                try:
                    conn.request(method, self.base + path, body=data, headers=headers)
                    response = conn.getresponse()
                    raw = response.read()
                    break
                except (http.client.HTTPException, OSError) as exc:
                    conn.close()
                    self._conn = None
                    # A kept-alive connection the server closed: one fresh try.
                    stale = isinstance(exc, (http.client.RemoteDisconnected,
                                             BrokenPipeError, ConnectionResetError))
                    if attempt == 1 or not stale:
                        raise OSError(str(exc) or type(exc).__name__) from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"error": raw[:200].decode(errors="replace")}
        return response.status, answer if isinstance(answer, dict) else {}


_clients: dict[tuple[str, str], _Client] = {}
_clients_lock = threading.Lock()


def _client(url: str, token: str, timeout: float) -> _Client:
    key = (url, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.timeout != timeout:
            client = _clients[key] = _Client(url, token, timeout)
        return client


def endpoint_token(environ: Mapping[str, str] | None = None) -> str | None:
    """Inside a hub, this user's endpoint token (made once, kept 0600 in their
    ``$HYBRIDNB_HOME``); outside, ``None`` (loopback endpoints may run open there).

    On a hub, loopback is shared with other users' servers (local spawners): an endpoint
    without a token would answer anyone on the machine.
    """
    env = os.environ if environ is None else environ
    if not in_hub(env):
        return None
    import secrets

    from ..fileio import atomic_write_text
    from ..state import state_home

    path = state_home() / "endpoint-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(path, token + "\n", mode=0o600)
        return token


__all__ = ["KINDS", "NO_LEASE", "HubUnavailable", "Lease", "QuotaError", "admit",
           "cluster_size", "endpoint_token", "in_hub", "reap", "release_ref"]
