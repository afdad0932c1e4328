"""The ASGI app of one endpoint: Open Inference Protocol v2, KServe v1 and ``/metrics``.

Starlette (lighter than FastAPI) with hand-written handlers: each parses, validates
against the bundle's schema, passes admission control, and awaits the batcher. Errors
are ``{"error": message}`` with a 4xx/5xx status, as the protocol asks.

>>> import tempfile, torch
>>> from hybridnb.serve.model_bundle import bundle
>>> app = create_app(bundle(torch.nn.Linear(2, 1), torch.zeros(1, 2), tempfile.mkdtemp() + "/m"))
>>> sorted({r.path for r in app.routes})[:2]
['/metrics', '/v1/models/{name}']
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .admission import Admission
from .auth import check_bearer
from .batching import Batcher
from .cache import ResponseCache
from .metrics import CONTENT_TYPE, EndpointMetrics
from .model_bundle import Bundle, load_bundle
from .protocol import HTTPError, infer_response, parse_infer, parse_v1, v1_response
from .settings import ServeSettings

if TYPE_CHECKING:
    import numpy as np
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable["Response"]]


class ServerState:
    """What one app serves and how: bundle, settings, batcher, admission, metrics, drain."""

    def __init__(self, bundle: Bundle, settings: ServeSettings):
        self.bundle = bundle
        self.settings = settings
        self.metrics = EndpointMetrics()
        self.admission = Admission(settings.max_in_flight, settings.max_queue)
        import torch

        example = torch.zeros([1, *bundle.input.shape[1:]],
                              dtype=getattr(torch, bundle.input.dtype))
        self.batcher = Batcher(bundle, max_batch_size=settings.max_batch_size,
                               max_latency_ms=settings.max_latency_ms,
                               max_requests=settings.max_in_flight,
                               batching=settings.batching, metrics=self.metrics,
                               threads=settings.threads, inline_max_ms=settings.inline_max_ms,
                               example=example)
        self.cache = ResponseCache(settings.cache_size) if settings.cache_size else None
        self._from_numpy = torch.from_numpy
        self._cat = torch.cat
        self.started = False
        self.draining = False

    @property
    def serving(self) -> bool:
        """Whether requests are answered: from startup until the model stops."""
        return self.started and self.batcher.running

    @property
    def ready(self) -> bool:
        """Readiness: serving and not draining (balancers send only to ready servers)."""
        return self.serving and not self.draining

    def begin_drain(self) -> None:
        """Turn readiness off (503) so balancers stop sending; in-flight requests go on.

        Requests that still arrive are answered too, until the server closes: a client
        (or balancer) that sent one before it saw readiness turn off must get its answer.
        """
        if not self.draining:
            logger.info("draining: readiness is off, finishing in-flight requests")
        self.draining = True

    async def run(self, x: np.ndarray) -> np.ndarray:
        """Admit, queue and run one request's batch; return its output rows."""
        if not self.serving:
            raise HTTPError(503, "the endpoint is not serving (starting or stopping)",
                            {"Retry-After": str(self.settings.retry_after_s)})
        if self.cache is not None:
            hit = self.cache.get(x)
            self.metrics.cache.labels(result="hit" if hit is not None else "miss").inc()
            if hit is not None:
                return hit
        if not self.admission.try_acquire():
            self.metrics.rejected.inc()
            raise HTTPError(503, "the endpoint is at capacity; retry later",
                            {"Retry-After": str(self.settings.retry_after_s)})
        try:
            if not x.flags.writeable:  # torch warns about (and may write to) read-only memory
                x = x.copy()
            timeout = self.settings.request_timeout_s or None
            out = await self._infer(self._from_numpy(x), timeout)
        except asyncio.TimeoutError:
            raise HTTPError(504, f"no answer within {self.settings.request_timeout_s:g} s; "
                                 "the request was dropped") from None
        finally:
            self.admission.release()
        y: np.ndarray = out.numpy()
        if self.cache is not None:
            self.cache.put(x, y)
        return y

    async def _infer(self, x: Any, timeout: float | None) -> Any:
        """Run ``x``; more rows than ``max_batch_size`` run as consecutive batches.

        The parts go one after another, not all at once: other requests' rows share
        the batches in between, so one large request cannot hold the model for all of
        its parts. ``timeout`` covers the whole request.
        """
        n = self.settings.max_batch_size
        rows = int(x.shape[0])
        if rows <= n:
            return await self.batcher.submit(x, timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        parts = []
        for start in range(0, rows, n):
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise asyncio.TimeoutError
            parts.append(await self.batcher.submit(x[start:start + n], left))
        return self._cat(parts)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    import orjson
    from starlette.responses import Response

    return Response(orjson.dumps(data), status, headers, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body; :class:`HTTPError` 413 as soon as it is over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading anything.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise HTTPError(400, "Content-Length is not an integer") from None
        if too_big:
            raise HTTPError(413, f"the body is {declared} bytes; the limit is {limit}")
    # ASGI receive() directly, not request.stream(): no async generator per request (the
    # hot path of a small model), and a chunked body, which has no Content-Length to
    # trust, is still counted as it arrives.
    chunks, size = [], 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            from starlette.requests import ClientDisconnect

            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def create_app(bundle: Bundle | str | os.PathLike[str],
               settings: ServeSettings | None = None) -> Starlette:
    """The ASGI app serving ``bundle``.

    Parameters
    ----------
    bundle:
        A loaded :class:`~hybridnb.serve.model_bundle.Bundle` or a bundle directory.
    settings:
        Limits, batching and the token; ``None`` means the defaults.

    The app's ``state.serving`` is its :class:`ServerState` (readiness, drain, metrics).
    """
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from .. import __version__

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    settings = settings or ServeSettings()
    state = ServerState(b, settings)
    token = settings.token
    metadata = {"name": b.name, "versions": [b.version], "platform": "pytorch_torch_export",
                "inputs": [b.input.to_dict()], "outputs": [b.output.to_dict()],
                "parameters": {"labels": b.labels, "content_hash": b.content_hash,
                               "max_batch_size": settings.max_batch_size}}

    def handler(route: str, fn: Handler, *, auth: bool) -> Handler:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if auth and token is not None and not check_bearer(
                        request.headers.get("authorization"), token):
                    raise HTTPError(401, "missing or wrong bearer token",
                                    {"WWW-Authenticate": 'Bearer realm="hybridnb"'})
                response = await fn(request)
            except HTTPError as exc:
                response = _json({"error": exc.message}, exc.status, exc.headers)
            except Exception:
                logger.exception("error answering %s %s", request.method, route)
                response = _json({"error": "internal error; see the server log"}, 500)
            state.metrics.observe(route, response.status_code, time.perf_counter() - start)
            return response
        return endpoint

    def model_of(request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != b.name or (version not in (None, "", b.version)):
            raise HTTPError(404, f"unknown model {name!r}" + (f" version {version!r}" if
                            version else "") + f"; this endpoint serves {b.name!r} "
                            f"version {b.version!r}")

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": state.ready}, 200 if state.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "hybridnb", "version": __version__,
                      "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        model_of(request)
        return _json(metadata)

    async def model_ready(request: Request) -> Response:
        model_of(request)
        return _json({"name": b.name, "ready": state.ready}, 200 if state.ready else 503)

    async def infer(request: Request) -> Response:
        model_of(request)
        body = await read_body(request, settings.max_body_bytes)
        req = parse_infer(body, request.headers.get("inference-header-content-length"),
                          b.input, b.output)
        y = await state.run(req.x)
        content, headers = infer_response(b.name, b.version, b.output, y, req)
        media = "application/octet-stream" if req.binary_output else "application/json"
        return Response(content, 200, headers, media_type=media)

    async def v1_model(request: Request) -> Response:
        model_of(request)
        return _json({"name": b.name, "ready": state.ready})

    async def v1_predict(request: Request) -> Response:
        model_of(request)
        body = await read_body(request, settings.max_body_bytes)
        y = await state.run(parse_v1(body, b.input))
        return Response(v1_response(y), 200, media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), 200, media_type=CONTENT_TYPE)

    # The router tries routes in order: v2 inference first, so the hot path matches on
    # the first pattern. No other pattern matches those paths, so nothing else changes.
    table: list[tuple[str, Handler, list[str], bool]] = [
        ("/v2/models/{name}/infer", infer, ["POST"], True),
        ("/v2/models/{name}/versions/{version}/infer", infer, ["POST"], True),
        ("/v2/health/live", live, ["GET"], False),
        ("/v2/health/ready", ready, ["GET"], False),
        ("/v2", server_metadata, ["GET"], True),
        ("/v2/models/{name}", model_metadata, ["GET"], True),
        ("/v2/models/{name}/versions/{version}", model_metadata, ["GET"], True),
        ("/v2/models/{name}/ready", model_ready, ["GET"], False),
        ("/v2/models/{name}/versions/{version}/ready", model_ready, ["GET"], False),
        ("/v1/models/{name}", v1_model, ["GET"], True),
        ("/v1/models/{name}:predict", v1_predict, ["POST"], True),
        ("/metrics", metrics, ["GET"], settings.metrics_auth),
    ]
    routes = [Route(path, handler(path, fn, auth=auth), methods=methods)
              for path, fn, methods, auth in table]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.batcher.start()
        state.started = True
        logger.info("serving %r v%s (%s)", b.name, b.version, state.batcher)
        try:
            yield
        finally:
            state.begin_drain()
            await state.batcher.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.serving = state
    return app
