"""The router's ASGI app: check the token, pick a replica, pass the request through.

The app owns one :class:`httpx.AsyncClient` (a keep-alive pool per replica) for its
lifetime; its ``state.serving`` follows the endpoint app's drain contract, so
:class:`~hybridnb.serve.server.ServerThread` runs either.

>>> from hybridnb.serve.router import ReplicaPool, RouterMetrics
>>> app = create_router_app(ReplicaPool(), "round_robin")
>>> "/metrics" in {r.path for r in app.routes}
True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .admission import Admission
from .app import read_body
from .auth import check_bearer
from .metrics import CONTENT_TYPE
from .protocol import HTTPError
from .router import Replica, ReplicaPool, RouterMetrics, now, policy
from .settings import ServeSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

#: Request headers passed to a replica (hop-by-hop ones and Host are the router's own).
FORWARD = ("content-type", "authorization", "inference-header-content-length", "accept")
#: Response headers passed back.
BACK = ("content-type", "inference-header-content-length", "retry-after", "www-authenticate")
#: Paths that stay open without a token, as at a replica (probes).
OPEN_SUFFIXES = ("/health/live", "/health/ready", "/ready")
#: How much longer than a replica's own ``request_timeout_s`` the router waits for it:
#: the replica's 504, which frees its slot, comes first.
TIMEOUT_MARGIN_S = 2.0
#: Idle connections to replicas are dropped after this, well before uvicorn's
#: keep-alive timeout (5 s) closes them at the replica: a request never goes out on a
#: connection the replica is closing.
KEEPALIVE_S = 2.0


class RouterState:
    """Readiness and drain of the router (the contract ``ServerThread`` expects)."""

    def __init__(self, admission: Admission) -> None:
        self.draining = False
        self.client: Any = None
        self.admission = admission

    def begin_drain(self) -> None:
        self.draining = True


class _Refused(Exception):
    """The replica gave no result, and sending the request elsewhere is safe.

    ``response`` is its 503 when it refused one; ``dead`` says that nothing listens there.
    """

    def __init__(self, why: str, response: Any = None, dead: bool = False):
        super().__init__(why)
        self.response = response
        self.dead = dead


def create_router_app(pool: ReplicaPool, routing: str = "round_robin", *,
                      settings: ServeSettings | None = None, token: str | None = None,
                      metrics: RouterMetrics | None = None,
                      background: Callable[[], list[Awaitable[None]]] | None = None,
                      timeout_s: float | None = None) -> Starlette:
    """The router app in front of ``pool``.

    Parameters
    ----------
    pool:
        The replicas (changed by the deployment while the app runs).
    routing:
        A name in :data:`~hybridnb.serve.router.POLICIES`.
    settings:
        The replicas' settings; the router applies their body limit, admits
        ``max_in_flight + max_queue`` requests per replica and, with ``metrics_auth``,
        asks for the token on ``/metrics``.
    token:
        Bearer token checked here too (replicas check it again).
    background:
        Coroutines to run while the app runs (health checks, the autoscaler); cancelled
        at shutdown.
    timeout_s:
        How long to wait for a replica's answer before answering 504 (default: the
        replicas' ``request_timeout_s`` plus :data:`TIMEOUT_MARGIN_S`; none when that
        is ``0``).

    See :mod:`hybridnb.serve.router` for what is retried and what is not.
    """
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response
    from starlette.routing import Route

    pick = policy(routing)
    settings = settings or ServeSettings()
    metrics = metrics or RouterMetrics()
    if timeout_s is None and settings.request_timeout_s:
        timeout_s = settings.request_timeout_s + TIMEOUT_MARGIN_S
    gate = Admission(settings.max_in_flight, settings.max_queue)
    sized_for = [1]  # replicas the gate is sized for
    state = RouterState(gate)
    retry_after = {"Retry-After": str(settings.retry_after_s)}
    unauthorized = {"WWW-Authenticate": 'Bearer realm="hybridnb"'}

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        import orjson

        return Response(orjson.dumps({"error": message}), status, headers,
                        media_type="application/json")

    def authorized(request: Request) -> bool:
        return token is None or check_bearer(request.headers.get("authorization"), token)

    async def forward(rep: Replica, request: Request, body: bytes) -> httpx.Response:
        """One try at ``rep``; :class:`_Refused` when it did not take the request."""
        headers = {k: v for k in FORWARD if (v := request.headers.get(k)) is not None}
        rep.in_flight += 1
        start = now()
        try:
            resp: httpx.Response = await state.client.request(
                request.method, rep.url + request.url.path, params=request.url.query or None,
                content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent. Refused: nothing listens there any more.
            raise _Refused(repr(exc), dead=isinstance(exc, httpx.ConnectError)) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            # Closed with no answer: the replica died under it. Inference has no side
            # effects, so running it elsewhere is safe.
            raise _Refused(repr(exc)) from None
        finally:
            rep.in_flight -= 1
        if resp.status_code == 503:
            # Admission or drain refused it unprocessed (and fast: not a latency to
            # learn, or a full replica would look like the quickest one).
            raise _Refused("503", resp)
        rep.observe(now() - start)
        return resp

    def answer(resp: httpx.Response) -> Response:
        headers = {k: v for k in BACK if (v := resp.headers.get(k)) is not None}
        media = headers.pop("content-type", None)
        return Response(resp.content, resp.status_code, headers, media_type=media)

    async def route(request: Request, body: bytes, start: float) -> Response:
        track = pool.choose_track()
        tried: list[Replica] = []
        refused: tuple[Replica, httpx.Response] | None = None
        for attempt in range(2):  # the first try, and one more elsewhere
            candidates = [r for r in pool.healthy(track) if r not in tried] or \
                [r for r in pool.healthy() if r not in tried]
            if not candidates:
                break
            rep = pick(candidates, pool)
            tried.append(rep)
            if attempt:
                metrics.retries.inc()
            try:
                resp = await forward(rep, request, body)
            except _Refused as exc:
                if exc.response is not None:
                    refused = rep, exc.response
                else:
                    logger.warning("replica %d (%s) did not take a request: %s", rep.index,
                                   rep.url, exc)
                if exc.dead:
                    rep.healthy = False  # the health loop replaces it
                    metrics.set_replicas(pool)
                continue
            except httpx.TimeoutException:
                # Slow is not dead: the health loop judges the replica, and this request
                # is not sent again (it may still run there).
                metrics.requests.labels(code="504", replica=str(rep.index),
                                        version=rep.track).inc()
                metrics.duration.labels(version=rep.track).observe(now() - start)
                return error(504, f"replica {rep.index} did not answer within "
                                  f"{timeout_s or 0:g} s; the request was not sent again")
            metrics.requests.labels(code=str(resp.status_code), replica=str(rep.index),
                                    version=rep.track).inc()
            metrics.duration.labels(version=rep.track).observe(now() - start)
            return answer(resp)
        if refused is not None:  # every replica tried is full: say so, as they did
            rep, resp = refused
            metrics.requests.labels(code="503", replica=str(rep.index), version=rep.track).inc()
            metrics.duration.labels(version=rep.track).observe(now() - start)
            return answer(resp)
        metrics.requests.labels(code="503", replica="none", version=track).inc()
        return error(503, "no healthy replica can take the request; retry later", retry_after)

    async def passthrough(request: Request) -> Response:
        start = now()
        if not request.url.path.endswith(OPEN_SUFFIXES) and not authorized(request):
            return error(401, "missing or wrong bearer token", unauthorized)
        n = len(pool.replicas) or 1
        if n != sized_for[0]:
            gate.resize(n * settings.max_in_flight, n * settings.max_queue)
            sized_for[0] = n
        if not gate.try_acquire():
            metrics.rejected.inc()
            metrics.requests.labels(code="503", replica="none", version="none").inc()
            return error(503, "the endpoint is at capacity; retry later", retry_after)
        metrics.in_flight.inc()
        try:
            try:
                body = await read_body(request, settings.max_body_bytes)
            except HTTPError as exc:
                metrics.requests.labels(code=str(exc.status), replica="none",
                                        version="none").inc()
                return error(exc.status, exc.message, exc.headers)
            return await route(request, body, start)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it
        finally:
            gate.release()
            metrics.in_flight.dec()

    async def live(request: Request) -> Response:
        return Response(b'{"live":true}', 200, media_type="application/json")

    async def ready(request: Request) -> Response:
        ok = not state.draining and bool(pool.healthy())
        return Response(b'{"ready":%s}' % (b"true" if ok else b"false"), 200 if ok else 503,
                        media_type="application/json")

    async def metrics_route(request: Request) -> Response:
        if settings.metrics_auth and not authorized(request):
            return error(401, "missing or wrong bearer token", unauthorized)
        metrics.set_replicas(pool)
        return Response(metrics.render(), 200, media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # No connection limit: admission bounds what is in flight, and a pool limit
        # would be a second, hidden queue.
        state.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None,
                                keepalive_expiry=KEEPALIVE_S))
        tasks = [asyncio.ensure_future(c) for c in (background() if background else [])]
        try:
            yield
        finally:
            state.begin_drain()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
    app = Starlette(routes=[Route("/metrics", metrics_route, methods=["GET"]),
                            Route("/v2/health/live", live, methods=["GET"]),
                            Route("/v2/health/ready", ready, methods=["GET"]),
                            Route("/{path:path}", passthrough, methods=methods)],
                    lifespan=lifespan)
    app.state.serving = state
    app.state.metrics = metrics
    return app
