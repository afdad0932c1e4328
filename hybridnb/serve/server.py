"""Run an endpoint app on uvicorn: in the foreground, or in a thread (tests, notebooks).

The socket is bound here, before uvicorn starts, so ``port=0`` gives an ephemeral port
that is known at once. On SIGTERM/SIGINT readiness turns 503 first, then uvicorn stops
accepting, lets in-flight requests finish (up to ``drain_timeout_s``) and exits.

The drain is lossless for every request a client had fully sent before the signal.
uvicorn, left alone, is not: at shutdown it closes each connection that has no request
in progress, and a connection whose request bytes wait unread in its socket buffer (just
accepted, or a keep-alive one between two requests, while the event loop was busy) looks
exactly like that; closing it with unread data resets it, and the client sees
``ReadError`` with no answer. So before uvicorn's shutdown, :func:`take_pending` lets the
event loop accept and read everything already waiting in the kernel.

Run as ``python -m hybridnb.serve.server BUNDLE --port 0 --ready-file F``: what
:mod:`hybridnb.serve.process` starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..fileio import atomic_write_json
from .auth import resolve_token
from .settings import ServeSettings

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)

#: Longest wait for already-sent requests before shutdown (a client that keeps sending
#: keeps the sockets readable; past this, the drain goes on without waiting for it).
TAKE_PENDING_MAX_S = 1.0
#: Checks in a row that must find nothing waiting: accepting a connection, making its
#: transport and starting to read it take a few loop iterations, each check spans one.
_QUIET_CHECKS = 5


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port=0``: an ephemeral one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it Nagle + delayed ACKs add ~40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings every endpoint server (and the benchmark's peers) runs with.

    The C parser (``httptools``) and ``uvloop`` when installed (uvicorn's ``auto`` would
    pick them too; naming them makes a benchmark peer's settings provably the same), no
    access log (a line per request costs more than a small model's call) and no
    ``Server`` header.

    >>> sorted(uvicorn_options())
    ['access_log', 'http', 'loop', 'server_header']
    """
    from importlib.util import find_spec

    return {"http": "httptools" if find_spec("httptools") else "h11",
            "loop": "uvloop" if find_spec("uvloop") else "asyncio",
            "access_log": False, "server_header": False}


def _waiting(server: uvicorn.Server, sockets: list[socket.socket]) -> bool:
    """Whether a connection waits to be accepted, or an idle one has unread bytes."""
    fds = [s.fileno() for s in sockets]
    for srv in getattr(server, "servers", []):
        fds += [s.fileno() for s in srv.sockets or ()]
    for conn in list(server.server_state.connections):
        # What uvicorn's shutdown closes at once: no request, or the last one answered.
        cycle = getattr(conn, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            continue
        transport = getattr(conn, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            fds.append(sock.fileno())
    fds = [fd for fd in fds if fd >= 0]
    return bool(fds) and bool(select.select(fds, [], [], 0)[0])


async def take_pending(server: uvicorn.Server, sockets: list[socket.socket] | None = None,
                       max_s: float = TAKE_PENDING_MAX_S) -> None:
    """Let the event loop accept and read what clients already sent; then return.

    Returns once no listening socket has a connection waiting to be accepted and no idle
    connection has unread bytes, several loop iterations in a row (or after ``max_s``).
    A request read meanwhile starts a cycle, which uvicorn's shutdown lets finish.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    quiet = 0
    while quiet < _QUIET_CHECKS and loop.time() < deadline:
        await asyncio.sleep(0.002)
        quiet = 0 if _waiting(server, list(sockets or [])) else quiet + 1


def _make_server(app: Any, *, log_config: Any, drain_timeout_s: float,
                 ready_file: Path | None = None) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # uvicorn re-raises the signal after shutting down; after a graceful
                # drain we exit normally instead, so callers can record a clean stop.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.state.serving.begin_drain()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Nothing yields between the last check and uvicorn closing the sockets.
            await take_pending(self, sockets)
            await super().shutdown(sockets)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if ready_file is not None and self.started and sockets:
                host, port = sockets[0].getsockname()[:2]
                # The reader never sees half a file.
                atomic_write_json(ready_file, {"pid": os.getpid(), "host": host, "port": port})

    config = uvicorn.Config(app, log_config=log_config,
                            timeout_graceful_shutdown=int(max(1, drain_timeout_s)),
                            lifespan="on", **uvicorn_options())
    return Server(config)


def run_server(bundle_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0,
               *, settings: ServeSettings | None = None, token: str | None = None,
               ready_file: str | os.PathLike[str] | None = None,
               exit_with: int | None = None) -> None:
    """Serve a bundle in the foreground until SIGTERM/SIGINT (what ``hybridnb serve`` runs).

    Parameters
    ----------
    bundle_path:
        The bundle directory.
    host, port:
        Where to listen; ``port=0`` picks a free port (logged, and written to
        ``ready_file``).
    settings:
        Limits and batching; ``token`` (or ``$HYBRIDNB_ENDPOINT_TOKEN``) overrides its
        token. Without a token only a loopback ``host`` is allowed.
    ready_file:
        Written (``{"pid", "host", "port"}``) once the server accepts connections.
    exit_with:
        A parent's pid: when that process is gone (this one is handed to another parent),
        drain and exit — a replica never outlives the deployment that owns it, even one
        killed with SIGKILL.
    """
    from .app import create_app
    from .model_bundle import load_bundle

    settings = settings or ServeSettings()
    settings = settings.replace(token=resolve_token(token or settings.token, host))
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    app = create_app(load_bundle(bundle_path), settings)
    sock = bind(host, port)
    bound = sock.getsockname()
    logger.info("listening on http://%s:%d (auth %s)", host, bound[1],
                "on" if settings.token else "off")
    server = _make_server(app, log_config=None, drain_timeout_s=settings.drain_timeout_s,
                          ready_file=Path(ready_file) if ready_file else None)
    if exit_with is not None:
        threading.Thread(target=_exit_with, args=(exit_with, server), daemon=True,
                         name="hybridnb-exit-with-parent").start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _exit_with(parent: int, server: Any, every_s: float = 1.0) -> None:
    """Ask ``server`` to drain and exit once ``parent`` is no longer this process's parent."""
    while os.getppid() == parent:
        time.sleep(every_s)
    logger.warning("the process that started this server (pid %d) is gone; draining and "
                   "exiting", parent)
    server.should_exit = True


class ServerThread:
    """An endpoint app on uvicorn in a background thread, on an ephemeral loopback port.

    For tests and notebooks: the real server, in this process.

    >>> import tempfile, torch, httpx
    >>> from hybridnb.serve.model_bundle import bundle
    >>> b = bundle(torch.nn.Linear(2, 1), torch.zeros(1, 2), tempfile.mkdtemp() + "/m")
    >>> from hybridnb.serve.app import create_app
    >>> with ServerThread(create_app(b)) as srv:
    ...     httpx.get(srv.url + "/v2/health/ready").status_code
    200
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 drain_timeout_s: float = 5.0):
        self.app = app
        self.sock = bind(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = _make_server(app, log_config=None, drain_timeout_s=drain_timeout_s)
        self.drain_timeout_s = drain_timeout_s
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}",
                                        daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            # uvicorn's own run: the same event loop (uvloop when installed) as a server
            # process; it leaves signals alone outside the main thread.
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # SystemExit on a failed startup, too
            self._error = exc

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start and wait until the server accepts connections."""
        from ..waiting import Ended, wait_until

        self._thread.start()
        try:
            wait_until(lambda: self.server.started, timeout=timeout, interval=0.01,
                       alive=self._thread.is_alive, what="the server")
        except (TimeoutError, Ended):
            self.stop()
            raise RuntimeError(f"the server did not start: {self._error!r}") from None
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Drain and stop: readiness off, in-flight requests finish, thread ends.

        Waits up to ``timeout`` seconds (default: the drain timeout and a little more).
        """
        if self._thread.is_alive():
            self.app.state.serving.begin_drain()
            self.server.should_exit = True
            self._thread.join(self.drain_timeout_s + 5.0 if timeout is None else timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerThread({self.url}, {'running' if self._thread.is_alive() else 'stopped'})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hybridnb.serve.server``."""
    parser = argparse.ArgumentParser(prog="python -m hybridnb.serve.server")
    parser.add_argument("bundle")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    parser.add_argument("--settings", default="{}", help="ServeSettings as JSON")
    parser.add_argument("--exit-with", type=int, metavar="PID",
                        help="Drain and exit when process PID (the parent) is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s", stream=sys.stderr)
    settings = ServeSettings.from_dict(json.loads(args.settings))
    run_server(args.bundle, args.host, args.port, settings=settings, ready_file=args.ready_file,
               exit_with=args.exit_with)
    return 0


if __name__ == "__main__":
    sys.exit(main())
