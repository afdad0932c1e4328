"""The edge agent: one process on the edge machine, serving while the link comes and goes.

It runs two HTTP servers in one event loop:

- the **front** (:mod:`.front`) for local clients, on loopback by default (beyond it a
  token is required, as for any endpoint);
- the **control** port for the centre: TLS with the agent's self-signed certificate
  (the centre pins it; plain HTTP only on loopback), every route behind the agent's
  token. Routes under ``/edge/v1/``: ``status``; ``blobs/{sha256}`` (``GET`` how much is
  here, ``PUT ?offset=&size=`` the rest: :mod:`.blobs`); ``rollouts`` (``POST`` a
  manifest, ``GET rollouts/{id}``: :mod:`.supervisor`); ``records?after=&epoch=`` and
  ``ack`` (the buffer, :mod:`.buffer`); and ``/metrics``.

Why an agent over HTTP rather than pushing with rsync over SSH: the edge must act on
its own while the link is down (roll back a failed switch, buffer metrics, keep
serving), so a process on the edge is needed anyway; given one, a token that can only
upload bundles and read metrics grants far less than an SSH login, and one TLS port is
all the edge exposes. Resuming, checksums and "send each file once" are small on top of
HTTP ranges and content addressing.

Run it as ``python -m hybridnb.serve.edge.agent`` or ``hybridnb edge agent``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.models import EdgeOptions
from ...errors import OperationError, UsageError
from ..auth import check_bearer, is_loopback, resolve_token
from .blobs import BlobError, BlobStore, DigestMismatch, OffsetMismatch, check_digest
from .buffer import RecordBuffer
from .front import Front
from .supervisor import Refused, Supervisor
from .tls import init_agent_dir, read_token
from .wire import Ack, AgentStatus, RolloutRequest, RolloutStatus

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

#: Largest JSON body the control port reads (manifests, acks).
MAX_JSON_BYTES = 1 << 20
#: The series a counter snapshot holds.
SNAPSHOT_PREFIXES = ("hybridnb_endpoint_requests_total", "hybridnb_endpoint_request_duration_",
                     "hybridnb_edge_")
#: Free disk an upload must leave.
DISK_RESERVE = 64 << 20


@dataclass
class _Upload:
    """A blob being received: which session writes it now, and what arrived."""

    generation: int = 0
    writer: Any = None
    sessions: int = 0
    received: int = 0


@dataclass
class AgentConfig:
    """Where the agent listens and what it keeps; the rest comes from ``sites.X.edge``."""

    state_dir: Path
    site: str = "edge"
    control_host: str = "127.0.0.1"
    control_port: int = 8443
    front_host: str = "127.0.0.1"
    front_port: int = 8080
    tls: bool = True
    token_file: Path | None = None
    front_token: str | None = None
    options: EdgeOptions = field(default_factory=EdgeOptions)
    bundle: Path | None = None
    ready_file: Path | None = None


class EdgeAgent:
    """The agent's parts (buffer, blobs, front, supervisor) and its control app.

    :func:`run_agent` serves it; tests and notebooks start it with
    :func:`hybridnb.serve.edge.process.start_agent` (a subprocess, as on a real edge).
    """

    def __init__(self, config: AgentConfig):
        self.config = config
        root = Path(config.state_dir)
        root.mkdir(parents=True, exist_ok=True)
        hosts = [config.control_host] if config.tls else []
        self.identity = init_agent_dir(root, hosts=hosts)
        self.token = read_token(config.token_file) if config.token_file else \
            self.identity.token
        limits = config.options.buffer
        self.buffer = RecordBuffer(root / "buffer.db", max_bytes=limits.max_bytes,
                                   max_records=limits.max_records)
        self.blobs = BlobStore(root / "blobs")
        self.front = Front(self.buffer, token=config.front_token)
        self.results: dict[str, int] = {}
        self.supervisor = Supervisor(root, self.blobs, self.front, config.options.rollout,
                                     on_result=self._count)
        self.uploads: dict[str, _Upload] = {}
        self._register_metrics()

    def _count(self, status: RolloutStatus) -> None:
        self.results[status.state.value] = self.results.get(status.state.value, 0) + 1

    def _register_metrics(self) -> None:
        from .metrics import EdgeCollector

        def values() -> dict[str, Any]:
            stats = self.buffer.stats()
            return {"ready": self.front.ready, "records": stats["records"],
                    "bytes": stats["bytes"], "dropped": stats["dropped"],
                    "rollouts": self.results}

        self.front.metrics.registry.register(EdgeCollector(values))

    # -- periodic work ---------------------------------------------------------------

    def snapshot(self) -> None:
        """Buffer the counters now (the front's and the agent's own), as one record.

        Only the families the front moves (requests, latency) and the agent's own: the
        rest of an endpoint's families (batching, queue) belong to its replicas.
        """
        series = [[name, labels, value] for name, labels, value in self.front.samples()
                  if name.startswith(SNAPSHOT_PREFIXES)]
        self.buffer.append("metrics", {"s": series})

    async def _every(self, seconds: float, fn: Any, *, thread: bool) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                if thread:
                    await asyncio.to_thread(fn)
                else:
                    fn()
            except Exception:  # keep going: a full disk now may be free later
                logger.exception("periodic %s failed", getattr(fn, "__name__", fn))

    # -- control routes --------------------------------------------------------------

    def status(self) -> AgentStatus:
        active = self.supervisor.active
        return AgentStatus(
            site=self.config.site, ready=self.front.ready,
            active=active.version_id if active else None,
            active_version=str(active.meta.get("version")) if active else None,
            content_hash=str(active.meta.get("content_hash")) if active else None,
            versions=self.supervisor.staged(), rollout=self.supervisor.rollout,
            buffer=self.buffer.stats(), time=time.time())

    async def put_blob(self, request: Request) -> Response:
        """Receive bytes of a blob from ``offset`` on; finish it when all ``size`` are in."""
        from ..protocol import HTTPError

        digest = check_digest(request.path_params["digest"])
        try:
            offset = int(request.query_params["offset"])
            size = int(request.query_params["size"])
        except (KeyError, ValueError):
            raise HTTPError(400, "give ?offset=N&size=TOTAL (whole numbers)") from None
        free = shutil.disk_usage(self.blobs.root).free
        if size - offset > free - DISK_RESERVE:
            raise HTTPError(507, f"the edge disk has {free} bytes free; this blob needs "
                                 f"{size - offset} more (and {DISK_RESERVE} stay free)")
        up = self.uploads.setdefault(digest, _Upload())
        if self.blobs.has(digest):  # a session before this one finished it: nothing to do
            return self._json(self.blobs.state(digest).model_dump(mode="json")
                              | {"sessions": up.sessions, "received": up.received})
        # A new session supersedes the one before (its connection may be dead without
        # either side knowing yet): close that writer first, so nothing of it lands later.
        up.generation += 1
        generation = up.generation
        if up.writer is not None:
            up.writer.close()
            up.writer = None
        try:
            writer = self.blobs.writer(digest, size=size, offset=offset)
        except OffsetMismatch as exc:
            raise HTTPError(409, str(exc), {"Upload-Offset": str(exc.offset)}) from None
        up.writer = writer
        up.sessions += 1
        stall = self.config.options.rollout.stall_timeout_s
        try:
            while True:
                try:
                    message = await asyncio.wait_for(request.receive(), stall)
                except asyncio.TimeoutError:
                    logger.info("blob %s…: nothing for %g s, keeping %d bytes", digest[:12],
                                stall, writer.offset)
                    break
                if message["type"] == "http.disconnect" or up.generation != generation:
                    break
                chunk = message.get("body", b"")
                if writer.offset + len(chunk) > size:
                    raise HTTPError(400, f"more than the announced {size} bytes")
                writer.write(chunk)
                up.received += len(chunk)
                if not message.get("more_body", False):
                    break
        finally:
            if up.generation == generation:
                writer.close()
                up.writer = None
        if up.generation != generation:
            raise HTTPError(409, "a newer upload of this blob took over")
        if writer.offset == size:
            try:
                state = await asyncio.to_thread(self.blobs.finish, digest, size)
            except DigestMismatch as exc:
                raise HTTPError(422, str(exc)) from None
        else:
            state = self.blobs.state(digest, size)
        return self._json(state.model_dump(mode="json") | {"sessions": up.sessions,
                                                           "received": up.received})

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None
              ) -> Response:
        import orjson
        from starlette.responses import Response

        return Response(orjson.dumps(data), status, headers, media_type="application/json")

    def control_app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        from ..metrics import CONTENT_TYPE
        from ..protocol import HTTPError

        async def body_json(request: Request) -> Any:
            body = await request.body()
            if len(body) > MAX_JSON_BYTES:
                raise HTTPError(413, f"the body is over {MAX_JSON_BYTES} bytes")
            return body

        def guarded(fn: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                try:
                    if not check_bearer(request.headers.get("authorization"), self.token):
                        raise HTTPError(401, "missing or wrong agent token",
                                        {"WWW-Authenticate": 'Bearer realm="hybridnb-edge"'})
                    return await fn(request)
                except HTTPError as exc:
                    return self._json({"error": exc.message}, exc.status, exc.headers)
                except (Refused, BlobError) as exc:
                    return self._json({"error": str(exc)}, 422)
                except UsageError as exc:
                    return self._json({"error": str(exc)}, 400)
                except OperationError as exc:
                    return self._json({"error": str(exc)}, 409)
                except Exception:
                    logger.exception("error answering %s %s", request.method, request.url.path)
                    return self._json({"error": "internal error; see the agent log"}, 500)
            return endpoint

        async def status(request: Request) -> Response:
            return self._json(self.status().model_dump(mode="json"))

        async def get_blob(request: Request) -> Response:
            digest = check_digest(request.path_params["digest"])
            up = self.uploads.get(digest, _Upload())
            return self._json(self.blobs.state(digest).model_dump(mode="json")
                              | {"sessions": up.sessions, "received": up.received})

        async def post_rollout(request: Request) -> Response:
            from pydantic import ValidationError

            try:
                req = RolloutRequest.model_validate_json(await body_json(request))
            except ValidationError as exc:
                raise HTTPError(422, f"invalid rollout: {exc}") from None
            status = await asyncio.to_thread(self.supervisor.begin, req)
            return self._json(status.model_dump(mode="json"), 202)

        async def get_rollout(request: Request) -> Response:
            current = self.supervisor.rollout
            if current is None or current.id != request.path_params["rid"]:
                raise HTTPError(404, f"no rollout {request.path_params['rid']!r} (only the "
                                     "latest one is kept)")
            return self._json(current.model_dump(mode="json"))

        async def records(request: Request) -> Response:
            q = request.query_params
            try:
                after, limit = int(q.get("after", "0")), int(q.get("limit", "1000"))
            except ValueError:
                raise HTTPError(400, "after and limit are whole numbers") from None
            await asyncio.to_thread(self.buffer.flush)  # what is queued is sent too
            page = await asyncio.to_thread(self.buffer.read, after, limit, q.get("epoch"))
            return Response(page.model_dump_json(), 200, media_type="application/json")

        async def ack(request: Request) -> Response:
            from pydantic import ValidationError

            try:
                a = Ack.model_validate_json(await body_json(request))
            except ValidationError as exc:
                raise HTTPError(422, f"invalid ack: {exc}") from None
            deleted = await asyncio.to_thread(self.buffer.ack, a.epoch, a.through)
            return self._json({"deleted": deleted})

        async def metrics(request: Request) -> Response:
            return Response(self.front.metrics.render(), 200, media_type=CONTENT_TYPE)

        table = [("/edge/v1/status", status, ["GET"]),
                 ("/edge/v1/blobs/{digest}", get_blob, ["GET"]),
                 ("/edge/v1/blobs/{digest}", self.put_blob, ["PUT"]),
                 ("/edge/v1/rollouts", post_rollout, ["POST"]),
                 ("/edge/v1/rollouts/{rid}", get_rollout, ["GET"]),
                 ("/edge/v1/records", records, ["GET"]),
                 ("/edge/v1/ack", ack, ["POST"]),
                 ("/metrics", metrics, ["GET"])]
        return Starlette(routes=[Route(p, guarded(fn), methods=m) for p, fn, m in table])

    # -- lifecycle -------------------------------------------------------------------

    def first_bundle(self) -> None:
        """Roll out ``config.bundle`` (a local directory) when nothing is active yet."""
        bundle = self.config.bundle
        if bundle is None or self.supervisor.active is not None:
            return
        from .client import manifest_of

        req, paths = manifest_of(bundle)
        for name, entry in req.files.items():
            if not self.blobs.has(entry.sha256):
                with self.blobs.writer(entry.sha256, size=entry.size, offset=0) as w, \
                        open(paths[name], "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        w.write(block)
                self.blobs.finish(entry.sha256, entry.size)
        self.supervisor.begin(req)
        status = self.supervisor.wait()
        if status is not None and status.state.value != "active":
            logger.error("the initial bundle %s was not rolled out: %s", bundle, status.reason)

    def close(self) -> None:
        self.supervisor.close()
        self.buffer.close()


def _server(app: Any, sock: Any, **options: Any) -> uvicorn.Server:
    import uvicorn

    from ..server import uvicorn_options

    class Server(uvicorn.Server):
        # Two servers share one loop: the agent handles the signals for both.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(app, log_config=None, lifespan="off",
                            timeout_graceful_shutdown=3, **uvicorn_options(), **options)
    return Server(config)


async def serve_agent(agent: EdgeAgent) -> None:
    """Serve the front and the control port until SIGTERM/SIGINT."""
    from ..server import bind

    cfg = agent.config
    control_sock = bind(cfg.control_host, cfg.control_port)
    front_sock = bind(cfg.front_host, cfg.front_port)
    tls: dict[str, Any] = {}
    if cfg.tls:
        tls = {"ssl_certfile": str(agent.identity.cert), "ssl_keyfile": str(agent.identity.key)}
    control = _server(agent.control_app(), control_sock, **tls)
    front = _server(agent.front.app(), front_sock)
    loop = asyncio.get_running_loop()
    agent.front.loop = loop

    def stop() -> None:
        control.should_exit = front.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(agent._every(0.25, agent.buffer.flush, thread=True)),
             asyncio.create_task(agent._every(cfg.options.buffer.sample_interval_s,
                                              agent.snapshot, thread=False))]
    servers = [asyncio.create_task(control.serve(sockets=[control_sock])),
               asyncio.create_task(front.serve(sockets=[front_sock]))]
    while not (control.started and front.started):
        if any(t.done() for t in servers):
            break
        await asyncio.sleep(0.02)
    if cfg.ready_file is not None and control.started and front.started:
        from ...fileio import atomic_write_json

        atomic_write_json(cfg.ready_file, {
            "pid": os.getpid(), "control": list(control_sock.getsockname()[:2]),
            "front": list(front_sock.getsockname()[:2]), "tls": cfg.tls,
            "cert": str(agent.identity.cert), "fingerprint": agent.identity.fingerprint})
    logger.info("edge agent %s: control %s://%s:%d, front http://%s:%d", cfg.site,
                "https" if cfg.tls else "http", *control_sock.getsockname()[:2],
                *front_sock.getsockname()[:2])

    def bring_up() -> None:  # in the background: the front answers 503 meanwhile
        agent.supervisor.restore()
        agent.first_bundle()

    tasks.append(asyncio.create_task(asyncio.to_thread(bring_up)))
    try:
        await asyncio.gather(*servers)
    finally:
        for t in tasks:
            t.cancel()
        agent.snapshot()  # the last counters reach the buffer before it closes
        await asyncio.to_thread(agent.close)
        control_sock.close()
        front_sock.close()


def run_agent(config: AgentConfig) -> None:
    """Check the configuration, then serve in the foreground (``hybridnb edge agent``).

    Raises :class:`UsageError` for a control port beyond loopback without TLS, and a
    front beyond loopback without a token.
    """
    if not config.tls and not is_loopback(config.control_host):
        raise UsageError(f"the control port would listen on {config.control_host} over plain "
                         "HTTP: the agent's token would cross the network in clear. Keep "
                         "TLS on, or listen on 127.0.0.1")
    config.front_token = resolve_token(config.front_token, config.front_host)
    agent = EdgeAgent(config)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve_agent(agent))


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; a :class:`UsageError` naming ``what`` otherwise.

    >>> parse_address("[::1]:8443", "--control")
    ('::1', 8443)
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"{what} {text!r}: give HOST:PORT (PORT 0 picks a free one)")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hybridnb.serve.edge.agent``."""
    parser = argparse.ArgumentParser(prog="python -m hybridnb.serve.edge.agent")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--site", default="edge")
    parser.add_argument("--control", default="127.0.0.1:8443", help="HOST:PORT")
    parser.add_argument("--front", default="127.0.0.1:8080", help="HOST:PORT")
    parser.add_argument("--no-tls", action="store_true", help="loopback control only")
    parser.add_argument("--token-file")
    parser.add_argument("--bundle", help="roll this bundle out when nothing is active")
    parser.add_argument("--options", default="{}", help="sites.X.edge as JSON")
    parser.add_argument("--options-file", help="sites.X.edge in a JSON file")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per health probe
    try:
        text = Path(args.options_file).read_text() if args.options_file else args.options
        options = EdgeOptions.model_validate(json.loads(text))
        control = parse_address(args.control, "--control")
        front = parse_address(args.front, "--front")
        run_agent(AgentConfig(
            state_dir=Path(args.state_dir), site=args.site, control_host=control[0],
            control_port=control[1], front_host=front[0], front_port=front[1],
            tls=not args.no_tls, token_file=Path(args.token_file) if args.token_file else None,
            options=options, bundle=Path(args.bundle) if args.bundle else None,
            ready_file=Path(args.ready_file) if args.ready_file else None))
    except (UsageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
