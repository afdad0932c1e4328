"""``hybridnb hub-service``: the team ledger as a JupyterHub service.

Users' hybridnb (library, CLI, the Jupyter server extension) asks it before every start
(:func:`hybridnb.team.admit`) and tells it when things stop. Every request is
authenticated by the hub: the caller's JupyterHub token (the single-user server's
``$JUPYTERHUB_API_TOKEN``) is checked with :class:`~jupyterhub.services.auth.HubOAuth`
and must carry ``access:services!service=NAME``; the admin page also accepts the hub's
OAuth login from a browser, and needs the ``custom:hybridnb:admin`` scope (or a name
in ``teams.admins``). A forged or expired token gets 401, a token without the scope
403, and nothing is recorded for either.

Routes, under the service's prefix (``/services/hybridnb/``):

=======  ======================  ===================================================
GET      ``api/health``          ``{"ok": true}`` (no auth: readiness probes)
POST     ``api/leases``          admit a start → 201 lease, 409 beyond a quota
GET      ``api/leases``          the caller's leases (``?active=1``)
DELETE   ``api/leases/{id}``     release (``?status=stopped|failed|succeeded|lost``)
GET      ``api/usage``           usage per user, group and site (admins)
GET      (the prefix itself)     the admin page: the same, as HTML (admins)
=======  ======================  ===================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from .admin import render_admin_page
from .ledger import Ledger, Refused

if TYPE_CHECKING:
    from ..config.teams import Teams

logger = logging.getLogger(__name__)

ADMIN_SCOPE = "custom:hybridnb:admin"
#: Seconds between two passes of the reaper (leases whose holder process is gone).
REAP_EVERY = 60.0


def admin_scope() -> str:
    """The custom scope that opens the admin page (rendered into the hub's roles)."""
    return ADMIN_SCOPE


class HubService:
    """What every handler shares: the team rules, the ledger, the hub's auth."""

    def __init__(self, teams: Teams, ledger: Ledger, auth: HubOAuth, prefix: str):
        self.teams, self.ledger, self.auth, self.prefix = teams, ledger, auth, prefix
        self.access_scope = f"access:services!service={teams.service.name}"

    def is_admin(self, model: dict[str, Any]) -> bool:
        scopes = set(model.get("scopes") or [])
        return ADMIN_SCOPE in scopes or model.get("name") in self.teams.admins


class _Base(HubOAuthenticated, web.RequestHandler):
    service: HubService

    def initialize(self, service: HubService) -> None:
        self.service = service
        self.hub_auth = service.auth

    @property
    def hub_scopes(self) -> set[str]:
        return {self.service.access_scope}

    def check_xsrf_cookie(self) -> None:
        # The API takes tokens only (never cookies), so a cross-site form cannot use it.
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message \
            else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    async def token_user(self) -> dict[str, Any]:
        """The user whose token authenticates this request (a header, never a cookie)."""
        token = self.hub_auth.get_token(self, in_cookie=False)
        if not token:
            raise web.HTTPError(401, "no JupyterHub token: send 'Authorization: token ...'")
        model = await self.hub_auth.user_for_token(token, sync=False)
        return self._allowed(model)

    def _allowed(self, model: dict[str, Any] | None) -> dict[str, Any]:
        if not model:
            raise web.HTTPError(401, "the hub does not know this token (forged, revoked "
                                "or expired)")
        if not self.hub_auth.check_scopes(self.hub_scopes, model):
            raise web.HTTPError(403, f"this token lacks the scope {self.service.access_scope}")
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "only users start things; services may not")
        return model

    def answer(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": True}))


class LeasesHandler(_Base):
    async def post(self) -> None:
        user = (await self.token_user())["name"]
        try:
            body = json.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            lease = await self._db(self.service.ledger.admit, self.service.teams, user, body)
        except Refused as exc:
            logger.info("refused %s: %s", user, exc)
            return self.answer(exc.to_dict(), 409)
        except ValueError as exc:
            return self.answer({"error": str(exc)}, 400)
        logger.info("admitted %s %s %s on %s", user, lease["kind"], lease["id"], lease["site"])
        self.answer(lease, 201)

    async def get(self) -> None:
        user = (await self.token_user())["name"]
        active = self.get_argument("active", "") in ("1", "true", "yes") or None
        self.answer({"leases": await self._db(self.service.ledger.leases, user,
                                              active=active)})

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # SQLite or PostgreSQL calls block: keep them off the event loop.
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: fn(*args, **kwargs))


class LeaseHandler(LeasesHandler):
    async def delete(self, lease_id: str) -> None:
        user = (await self.token_user())["name"]
        status = self.get_argument("status", "stopped")
        try:
            lease = await self._db(self.service.ledger.release, user, lease_id, status)
        except KeyError:
            return self.answer({"error": f"no lease {lease_id!r} of {user}"}, 404)
        except ValueError as exc:
            return self.answer({"error": str(exc)}, 400)
        self.answer(lease)


class UsageHandler(LeasesHandler):
    async def get(self) -> None:
        model = await self.token_user()
        if not self.service.is_admin(model):
            raise web.HTTPError(403, f"the usage of others needs the scope {ADMIN_SCOPE}")
        ledger = self.service.ledger
        self.answer({"usage": await self._db(ledger.usage, self.service.teams),
                     "leases": await self._db(ledger.leases, None, limit=200)})


class AdminPageHandler(_Base):
    """The admin page, for browsers: the hub's OAuth login, then the usage tables."""

    async def prepare(self) -> None:
        # Identify the browser's user without blocking the loop (the hub is asked over
        # HTTP); none: @authenticated sends the browser to the hub's OAuth login.
        model = await self.hub_auth.get_user(self, sync=False)
        if model:
            self.current_user = self._allowed(model)

    @web.authenticated
    async def get(self) -> None:
        model = self.current_user
        if not self.service.is_admin(model):
            raise web.HTTPError(403, f"this page needs the scope {ADMIN_SCOPE}")
        ledger = self.service.ledger
        loop = asyncio.get_running_loop()
        usage = await loop.run_in_executor(None, ledger.usage, self.service.teams)
        recent = await loop.run_in_executor(None, lambda: ledger.leases(None, limit=100))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_admin_page(usage, recent, viewer=str(model["name"])))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message \
            else self._reason
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {message}\n")


def make_app(teams: Teams, ledger: Ledger, *, api_url: str, api_token: str,
             prefix: str | None = None, cache_max_age: float = 60.0) -> web.Application:
    """The tornado application of the service (routes in the module docstring)."""
    name = teams.service.name
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{name}/"
    prefix = "/" + prefix.strip("/") + "/"
    auth = HubOAuth(api_url=api_url, api_token=api_token, base_url=prefix,
                    oauth_client_id=os.environ.get("JUPYTERHUB_CLIENT_ID") or f"service-{name}",
                    cache_max_age=int(cache_max_age),
                    access_scopes={f"access:services!service={name}"})
    service = HubService(teams, ledger, auth, prefix)
    args = {"service": service}
    routes: list[Any] = [
        (rf"{prefix}api/health", HealthHandler),
        (rf"{prefix}api/leases", LeasesHandler, args),
        (rf"{prefix}api/leases/([A-Za-z0-9_.-]+)", LeaseHandler, args),
        (rf"{prefix}api/usage", UsageHandler, args),
        (rf"{prefix}oauth_callback", HubOAuthCallbackHandler),
        (rf"{prefix}?", AdminPageHandler, args),
    ]
    return web.Application(routes, cookie_secret=secrets.token_bytes(32),
                           hub_auth=auth, login_url=auth.login_url)


def holder_alive(lease: dict[str, Any]) -> bool:
    """Whether the process holding ``lease`` may still run (unknown hosts: yes)."""
    from ..state import ProcessRef

    if lease.get("host") != socket.gethostname() or not lease.get("pid"):
        return True
    return ProcessRef(pid=int(lease["pid"]), create_time=lease.get("create_time")).alive()


async def _reaper(ledger: Ledger, after: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(REAP_EVERY)
        try:
            n = await loop.run_in_executor(
                None, lambda: ledger.reap_stale(time.time() - after, holder_alive))
            if n:
                logger.info("reaped %d lease(s) whose holder process is gone", n)
        except Exception:  # the database away for a moment: try again next pass
            logger.exception("reaper pass failed")


def serve(teams: Teams, *, database: str, listen: str, api_url: str, api_token: str,
          prefix: str | None = None, on_listen: Callable[[str], None] | None = None) -> None:
    """Run the service until SIGINT/SIGTERM (blocking); ``on_listen(url)`` once it
    listens."""
    import signal

    host, _, port = listen.rpartition(":")
    ledger = Ledger(database)
    app = make_app(teams, ledger, api_url=api_url, api_token=api_token, prefix=prefix)

    async def main() -> None:
        server = app.listen(int(port), address=host, xheaders=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reaper = asyncio.ensure_future(_reaper(ledger, teams.service.reap_after))
        logger.info("hybridnb hub service on http://%s:%s, ledger %r", host, port, ledger)
        if on_listen is not None:
            on_listen(f"http://{host}:{port}{app.settings['hub_auth'].base_url}")
        await stop.wait()
        reaper.cancel()
        server.stop()
        ledger.close()

    asyncio.run(main())
