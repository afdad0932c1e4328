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

from .auth import check_bearer
from .metrics import CONTENT_TYPE
from .router import Replica, ReplicaPool, RouterMetrics, now, policy

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

#: Request headers passed to a replica (hop-by-hop ones and Host are the router's own).
FORWARD = ("content-type", "authorization", "inference-header-content-length", "accept")
#: Response headers passed back.
BACK = ("content-type", "inference-header-content-length", "retry-after", "www-authenticate")
#: Paths that stay open without a token, as at a replica (probes and scrapers).
OPEN_SUFFIXES = ("/health/live", "/health/ready", "/ready")


class RouterState:
    """Readiness and drain of the router (the contract ``ServerThread`` expects)."""

    def __init__(self) -> None:
        self.draining = False
        self.client: Any = None

    def begin_drain(self) -> None:
        self.draining = True


def create_router_app(pool: ReplicaPool, routing: str = "round_robin", *,
                      token: str | None = None, metrics: RouterMetrics | None = None,
                      background: Callable[[], list[Awaitable[None]]] | None = None,
                      timeout_s: float = 60.0) -> Starlette:
    """The router app in front of ``pool``.

    Parameters
    ----------
    pool:
        The replicas (changed by the deployment while the app runs).
    routing:
        A name in :data:`~hybridnb.serve.router.POLICIES`.
    token:
        Bearer token checked here too (replicas check it again).
    background:
        Coroutines to run while the app runs (health checks, the autoscaler); cancelled
        at shutdown.
    """
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    pick = policy(routing)
    metrics = metrics or RouterMetrics()
    state = RouterState()

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        import orjson

        return Response(orjson.dumps({"error": message}), status, headers,
                        media_type="application/json")

    async def forward(rep: Replica, request: Request, body: bytes) -> httpx.Response:
        headers = {k: v for k in FORWARD if (v := request.headers.get(k)) is not None}
        rep.in_flight += 1
        metrics.in_flight.inc()
        start = now()
        try:
            resp: httpx.Response = await state.client.request(
                request.method, rep.url + request.url.path, params=request.url.query or None,
                content=body, headers=headers)
        finally:
            rep.in_flight -= 1
            metrics.in_flight.dec()
        rep.observe(now() - start)
        return resp

    async def passthrough(request: Request) -> Response:
        start = now()
        path = request.url.path
        if token is not None and not path.endswith(OPEN_SUFFIXES) and not check_bearer(
                request.headers.get("authorization"), token):
            return error(401, "missing or wrong bearer token",
                         {"WWW-Authenticate": 'Bearer realm="hybridnb"'})
        body = await request.body()
        track = pool.choose_track()
        tried: list[Replica] = []
        for attempt in range(2):  # the first try, and one retry elsewhere
            candidates = [r for r in pool.healthy(track) if r not in tried] or \
                [r for r in pool.healthy() if r not in tried]
            if not candidates:
                break
            rep = pick(candidates, pool)
            tried.append(rep)
            try:
                resp = await forward(rep, request, body)
            except httpx.TransportError as exc:
                # The replica is gone or broken: take it out now (the health loop
                # replaces it) and try another one once.
                logger.warning("replica %d (%s) failed: %r", rep.index, rep.url, exc)
                rep.healthy = False
                metrics.set_replicas(pool)
                if attempt == 0:
                    metrics.retries.inc()
                continue
            metrics.requests.labels(code=str(resp.status_code), replica=str(rep.index),
                                    version=rep.track).inc()
            metrics.duration.labels(version=rep.track).observe(now() - start)
            headers = {k: v for k in BACK if (v := resp.headers.get(k)) is not None}
            media = headers.pop("content-type", None)
            return Response(resp.content, resp.status_code, headers, media_type=media)
        metrics.requests.labels(code="503", replica="none", version=track).inc()
        return error(503, "no healthy replica can take the request; retry later",
                     {"Retry-After": "1"})

    async def live(request: Request) -> Response:
        return Response(b'{"live":true}', 200, media_type="application/json")

    async def ready(request: Request) -> Response:
        ok = not state.draining and bool(pool.healthy())
        return Response(b'{"ready":%s}' % (b"true" if ok else b"false"), 200 if ok else 503,
                        media_type="application/json")

    async def metrics_route(request: Request) -> Response:
        metrics.set_replicas(pool)
        return Response(metrics.render(), 200, media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        n = 64  # connections kept per replica: enough for wrk-style load on a few cores
        state.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=n * 8, max_keepalive_connections=n * 8))
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
