"""Drain without loss: every request fully sent before the stop gets its answer.

uvicorn's shutdown closes each connection with no request in progress, and a connection
whose request still waits unread in its socket buffer looks just like one: closing it
resets it and the client gets no answer (seen as a ``ReadError`` about once in 20
SIGTERMs of ``hybridnb deploy``). These tests send a burst of requests on raw sockets,
half on fresh connections and half on keep-alive connections that already carried one,
and only then stop the server: with the event loop busy with the burst, some requests
are still unread when the shutdown begins. A raw socket makes "fully sent" exact: every
byte is in the server's receive buffer before the stop.

The in-process cycles reuse one replica process and start a new server thread each time
(milliseconds), so they can repeat often enough to catch a race of a few per cent; the
last test runs the whole ``hybridnb deploy`` process and its SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hybridnb.serve.app import create_app
from hybridnb.serve.process import ServerProcess, start_server
from hybridnb.serve.router import ReplicaPool
from hybridnb.serve.router_app import create_router_app
from hybridnb.serve.server import ServerThread
from hybridnb.serve.settings import ServeSettings
from hybridnb.testing.waiting import wait_until

pytestmark = pytest.mark.slow

CYCLES = 60  # a 5 % race escapes 60 cycles with probability 0.95**60 < 5 %
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                               "data": [0.5] * 8}]}).encode()
REQUEST = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: test\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)


def read_status(sock: socket.socket) -> int | str:
    """The status of the one response on ``sock``, or the error that ended it."""
    sock.settimeout(30)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed without an answer"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed mid-answer"
            rest += chunk
    except OSError as exc:
        return repr(exc)
    return int(head.split()[1])


def burst(port: int, n: int = 8) -> list[socket.socket]:
    """``n`` keep-alive connections (one request answered) and ``n`` fresh ones, each
    with one more request fully sent; returns their sockets."""
    keep = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(REQUEST)
        assert read_status(sock) == 200
        keep.append(sock)
    fresh = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for sock in keep + fresh:
        sock.sendall(REQUEST)
    return keep + fresh


def answers(socks: list[socket.socket]) -> list[int | str]:
    try:
        return [read_status(s) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def replica(mlp, tmp_path_factory) -> Iterator[ServerProcess]:
    with pytest.MonkeyPatch.context() as env:  # its log goes to a state home of its own
        env.setenv("HYBRIDNB_HOME", str(tmp_path_factory.mktemp("state")))
        proc = start_server(mlp[1].path, settings=ServeSettings(batching=False),
                            record=False)
        yield proc
        proc.stop(grace=10)


# A replica answers faster than the router (no second hop), so it takes a larger burst
# to be still reading when the shutdown begins (without the fix: about 1 stop in 8).
@pytest.mark.parametrize(("server", "n"), [("router", 8), ("replica", 32)])
def test_stop_answers_every_request_sent_before_it(server, n, mlp, replica):
    settings = ServeSettings(batching=False)
    lost = []
    for cycle in range(CYCLES):
        if server == "router":  # the router of a deployment, in front of a real replica
            pool = ReplicaPool()
            pool.add(replica.url)
            app = create_router_app(pool, settings=settings)
        else:  # a replica's own app and server
            app = create_app(mlp[1], settings)
        srv = ServerThread(app).start()
        socks = burst(srv.port, n)
        srv.stop()  # what SIGTERM does: readiness off, then uvicorn's shutdown
        got = answers(socks)
        if got != [200] * len(socks):
            lost.append((cycle, [g for g in got if g != 200]))
    assert not lost, f"{len(lost)} of {CYCLES} stops lost requests: {lost[:3]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_of_hybridnb_deploy_answers_what_was_sent(mlp, hybridnb_home):
    # The real command on the port it was given; SIGTERM after a burst; every request
    # of the burst answered, then a clean exit with the replicas stopped. Once: two
    # replicas take a while to start, and the cycles above are what catch the race.
    from hybridnb.state import Kind, StateStore

    port = free_port()
    log = hybridnb_home / "deploy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hybridnb", "deploy", str(mlp[1].path), "-n", "2",
             "--port", str(port), "--no-batching"], stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
            return read_status(s) == 200

    try:
        wait_until(ready, timeout=90, what=f"hybridnb deploy on port {port}",
                   alive=lambda: proc.poll() is None)
        (rec,) = wait_until(lambda: StateStore().list(Kind.endpoint, active=True),
                            what="the deployment's record")
        assert rec.address == f"http://127.0.0.1:{port}"  # --port is where it listens
        socks = burst(port)
        proc.send_signal(signal.SIGTERM)
        assert answers(socks) == [200] * len(socks)
        assert proc.wait(60) == 0, log.read_text()
        for p in rec.pids:
            wait_until(lambda p=p: not _alive(p.pid), timeout=30, what=f"replica {p.pid}")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``hybridnb deploy`` and whatever replicas it left (they have sessions of their
    own, so killing the command alone would orphan them)."""
    from hybridnb.state import Kind, StateStore

    if proc.poll() is None:
        proc.terminate()  # it closes its replicas
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for rec in StateStore().list(Kind.endpoint):
        for p in rec.pids:
            if _alive(p.pid):
                os.kill(p.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
