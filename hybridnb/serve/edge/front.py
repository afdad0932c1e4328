"""The edge endpoint local clients talk to: one port, whichever version serves behind it.

The front speaks the same protocol as any endpoint (it forwards the Open Inference
Protocol and KServe v1 routes to the current replica, answers ``/v2/health/*`` and
``/metrics`` itself) and owns the two things an edge site must keep across versions
and outages:

- **the switch**: :meth:`Front.switch` replaces the upstream in one assignment; each
  request keeps the upstream it started with, so requests at the old replica finish
  there while new ones go to the new replica, and clients never see a connection close
  (their connections are the front's, not a replica's). A request that cannot reach
  its replica (it died, or a rollback is switching) is sent once more to whichever
  replica is current: inference has no side effects.
- **the record**: every answered request is counted in the endpoint's usual metrics
  (:class:`~hybridnb.serve.metrics.EndpointMetrics`) and logged as one record in the
  on-disk buffer, in the same step of the event loop; so a snapshot of the counters
  and the request log always agree, whatever the link does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..auth import check_bearer
from ..metrics import CONTENT_TYPE, EndpointMetrics

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .buffer import RecordBuffer

logger = logging.getLogger(__name__)

#: Route templates forwarded to the replica (the label values of the request metrics).
FORWARDED = (
    ("/v2/models/{name}/infer", ["POST"]),
    ("/v2/models/{name}/versions/{version}/infer", ["POST"]),
    ("/v2", ["GET"]),
    ("/v2/models/{name}", ["GET"]),
    ("/v2/models/{name}/versions/{version}", ["GET"]),
    ("/v2/models/{name}/ready", ["GET"]),
    ("/v2/models/{name}/versions/{version}/ready", ["GET"]),
    ("/v1/models/{name}", ["GET"]),
    ("/v1/models/{name}:predict", ["POST"]),
)
_REQUEST_HEADERS = ("content-type", "inference-header-content-length", "accept")
_RESPONSE_HEADERS = ("content-type", "inference-header-content-length", "retry-after")


class Upstream:
    """One replica as the front sees it: its URL, a connection pool, requests in flight."""

    def __init__(self, url: str, token: str | None, version_id: str, name: str,
                 version: str, timeout: float):
        import httpx

        self.url = url
        self.version_id = version_id
        self.name = name
        self.version = version
        self.in_flight = 0
        #: Requests that could not reach this replica (refused, reset): the watch reads it.
        self.errors = 0
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(
            base_url=url, headers=headers,
            timeout=httpx.Timeout(timeout, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    def __repr__(self) -> str:
        return f"Upstream({self.version_id}, {self.url}, in flight {self.in_flight})"


class Front:
    """The edge endpoint: forwards to :attr:`current`, counts and logs every request.

    Parameters
    ----------
    buffer:
        Where each request's record goes (the log forwarded to the centre).
    token:
        Bearer token local clients must send (``None``: open, loopback only).
    max_body_bytes, timeout:
        The replica's own limits: bodies refused beyond, seconds a replica may take.
    """

    def __init__(self, buffer: RecordBuffer, *, token: str | None = None,
                 max_body_bytes: int = 8 << 20, timeout: float = 35.0):
        self.buffer = buffer
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.metrics = EndpointMetrics()
        self.current: Upstream | None = None
        #: The version before a switch, warm until the switch is confirmed: the first
        #: request that cannot reach :attr:`current` sends the front back to it.
        self.fallback: Upstream | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.switches = 0

    def upstream(self, url: str, token: str | None, version_id: str, name: str,
                 version: str) -> Upstream:
        """A new upstream for a replica (not yet current)."""
        return Upstream(url, token, version_id, name, version, self.timeout)

    def switch(self, upstream: Upstream | None, *, fallback: Upstream | None = None
               ) -> Upstream | None:
        """Send new requests to ``upstream`` from now on; return the one before.

        ``fallback`` (the version before, still running) is where the front goes back to
        by itself when ``upstream`` cannot be reached; :meth:`confirm` drops it. One
        assignment each, safe from any thread: a request reads :attr:`current` once.
        """
        self.fallback = fallback
        previous, self.current = self.current, upstream
        self.switches += 1
        logger.info("front now serves %s (was %s)",
                    upstream.version_id if upstream else "nothing",
                    previous.version_id if previous else "nothing")
        return previous

    def confirm(self) -> None:
        """The switch holds: forget the fallback (its replica is about to stop)."""
        self.fallback = None

    def _fail_over(self, failed: Upstream) -> None:
        fallback = self.fallback
        if fallback is not None and self.current is failed:
            self.current, self.fallback = fallback, None
            logger.warning("front: %s is unreachable, back to %s", failed.version_id,
                           fallback.version_id)

    def close_upstream(self, upstream: Upstream) -> None:
        """Close an upstream's connections (from any thread)."""
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(upstream.client.aclose(), self.loop)

    @property
    def ready(self) -> bool:
        return self.current is not None

    # -- the app ---------------------------------------------------------------------

    def _record(self, route: str, code: int, seconds: float, version: str | None) -> None:
        # No await between these two: a counter snapshot sees both or neither.
        self.metrics.observe(route, code, seconds)
        self.buffer.append("request", {"r": route, "c": code, "d": round(seconds, 6),
                                       "v": version})

    async def _forward(self, request: Request, body: bytes) -> tuple[httpx.Response, str]:
        import httpx

        from ..protocol import HTTPError

        headers = {k: v for k, v in request.headers.items() if k in _REQUEST_HEADERS}
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        for attempt in range(3):
            up = self.current
            if up is None:
                raise HTTPError(503, "no model version is serving here yet",
                                {"Retry-After": "1"})
            up.in_flight += 1
            try:
                response = await up.client.request(request.method, path, content=body,
                                                   headers=headers)
                return response, up.version
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError, httpx.PoolTimeout) as exc:
                # Nothing was answered: the replica is gone or going. Again, to the
                # version before it if it is still warm, else to whichever is current.
                up.errors += 1
                self._fail_over(up)
                if attempt == 2:
                    raise HTTPError(502, f"the model replica is unreachable: {exc}") from None
                await asyncio.sleep(0.05 * (attempt + 1))
            except httpx.TimeoutException:
                raise HTTPError(504, f"the model replica did not answer within "
                                     f"{self.timeout:g} s") from None
            finally:
                up.in_flight -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    def app(self) -> Starlette:
        """The ASGI app: forwarded routes, ``/v2/health/live|ready`` and ``/metrics``."""
        import orjson
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        from ..protocol import HTTPError

        def json(data: Any, status: int = 200, headers: dict[str, str] | None = None
                 ) -> Response:
            return Response(orjson.dumps(data), status, headers, media_type="application/json")

        def forwarded(route: str) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                start = time.perf_counter()
                version: str | None = None
                try:
                    if self.token is not None and not check_bearer(
                            request.headers.get("authorization"), self.token):
                        raise HTTPError(401, "missing or wrong bearer token",
                                        {"WWW-Authenticate": 'Bearer realm="hybridnb"'})
                    body = await request.body()
                    if len(body) > self.max_body_bytes:
                        raise HTTPError(413, f"the body is over the limit of "
                                             f"{self.max_body_bytes} bytes")
                    upstream, version = await self._forward(request, body)
                    headers = {k: v for k, v in upstream.headers.items()
                               if k in _RESPONSE_HEADERS}
                    response = Response(upstream.content, upstream.status_code, headers)
                except HTTPError as exc:
                    response = json({"error": exc.message}, exc.status, exc.headers)
                except Exception:
                    logger.exception("error forwarding %s %s", request.method, route)
                    response = json({"error": "internal error; see the agent log"}, 500)
                self._record(route, response.status_code, time.perf_counter() - start,
                             version)
                return response
            return endpoint

        async def live(request: Request) -> Response:
            return json({"live": True})

        async def ready(request: Request) -> Response:
            return json({"ready": self.ready}, 200 if self.ready else 503)

        async def metrics(request: Request) -> Response:
            return Response(self.metrics.render(), 200, media_type=CONTENT_TYPE)

        routes = [Route(path, forwarded(path), methods=methods) for path, methods in FORWARDED]
        routes += [Route("/v2/health/live", live, methods=["GET"]),
                   Route("/v2/health/ready", ready, methods=["GET"]),
                   Route("/metrics", metrics, methods=["GET"])]
        return Starlette(routes=routes)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """The endpoint counters now, as ``(name, labels, value)`` (a buffer snapshot)."""
        out = []
        for family in self.metrics.registry.collect():
            for s in family.samples:
                if s.name.endswith("_created"):  # prometheus_client's start times
                    continue
                out.append((s.name, dict(s.labels), float(s.value)))
        return out
