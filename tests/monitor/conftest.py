"""Fixtures for monitoring tests: loopback metrics servers, promtool."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

EXPOSITION = """\
# HELP hybridnb_endpoint_requests_total HTTP requests answered.
# TYPE hybridnb_endpoint_requests_total counter
hybridnb_endpoint_requests_total{{code="200",route="/v2/models/{{name}}/infer"}} {ok}
hybridnb_endpoint_requests_total{{code="500",route="/v2/models/{{name}}/infer"}} {err}
# HELP hybridnb_endpoint_queue_depth Admitted requests waiting.
# TYPE hybridnb_endpoint_queue_depth gauge
hybridnb_endpoint_queue_depth 2
"""


class MetricsServer:
    """A real HTTP server on 127.0.0.1 answering ``/metrics`` with ``self.body``."""

    def __init__(self, body: str = "", delay: float = 0.0, keepalive: bool = False):
        self.body = body
        self.delay = delay
        self.connections = 0  # TCP connections accepted
        self.hangup = False  # close each connection after its response, without saying so
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keepalive else "HTTP/1.0"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:
                if outer.delay:
                    outer.stopping.wait(outer.delay)
                data = outer.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if outer.hangup:  # an idle timeout on the server's side
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def metrics_server() -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def start(body: str = "", delay: float = 0.0, keepalive: bool = False) -> MetricsServer:
        srv = MetricsServer(body, delay, keepalive)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; CI installs it)")
    return path
