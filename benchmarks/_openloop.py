"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, whatever the server does.

wrk is closed-loop (each connection waits for its answer before sending the next), so
a server that slows down under overload is offered less load and looks better than it
is. Here request ``i`` is due at ``start + i / rate`` and goes out then, on an idle
keep-alive connection or a new one (at most ``max_connections``; a request with none
free counts as ``dropped``, the client's own limit). Latency is counted from the due
time, not from the send, so queueing in the client is not hidden (no coordinated
omission). A request without an answer within ``timeout_s`` counts as ``timeout``.

Run in a process of its own (it needs most of a core at a few thousand requests per
second): ``python _openloop.py URL BODY_FILE RATE SECONDS`` prints one JSON line.

>>> summarize([(200, 0.001), (200, 0.003), (503, 0.0001)], 1.0)["ok_per_s"]
2.0
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def summarize(results: list[tuple[int, float]], seconds: float) -> dict[str, float]:
    """Per-status counts, 200s per second and latency percentiles (ms) of 200s and 503s.

    ``results`` are ``(status, latency_s)``; status ``0`` is a timeout, ``-1`` a request
    dropped at the client (no connection free), ``-2`` a connection error.
    """
    ok = [lat for status, lat in results if status == 200]
    shed = [lat for status, lat in results if status == 503]
    return {"sent": float(len(results)), "ok": float(len(ok)), "shed": float(len(shed)),
            "other": float(sum(status not in (200, 503, 0, -1, -2) for status, _ in results)),
            "timeout": float(sum(status == 0 for status, _ in results)),
            "dropped": float(sum(status == -1 for status, _ in results)),
            "errors": float(sum(status == -2 for status, _ in results)),
            "ok_per_s": len(ok) / seconds,
            "ok_p50_ms": _percentile(ok, 50) * 1e3, "ok_p99_ms": _percentile(ok, 99) * 1e3,
            "shed_p99_ms": _percentile(shed, 99) * 1e3}


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, body: bytes, rate: float, seconds: float, *,
              max_connections: int = 1024, timeout_s: float = 5.0,
              headers: dict[str, str] | None = None) -> list[tuple[int, float]]:
    """Offer ``rate`` requests per second (POST ``body`` to ``url``) for ``seconds``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\n{extra}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    now = time.perf_counter  # the loop's clock may tick in whole milliseconds (uvloop)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_count = [0]
    results: list[tuple[int, float]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        conn = idle.pop() if idle else None
        if conn is None:
            if open_count[0] >= max_connections:
                results.append((-1, now() - due))
                return
            open_count[0] += 1
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
            except (OSError, asyncio.TimeoutError):
                open_count[0] -= 1
                results.append((-2, now() - due))
                return
        reader, writer = conn
        try:
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), timeout_s)
        except asyncio.TimeoutError:
            results.append((0, now() - due))
            writer.close()
            open_count[0] -= 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            results.append((-2, now() - due))
            writer.close()
            open_count[0] -= 1
            return
        results.append((status, now() - due))
        idle.append(conn)

    start = now()
    total = int(rate * seconds)
    sent = 0
    while sent < total:
        due_now = min(total, int((now() - start) * rate) + 1)
        while sent < due_now:
            task = asyncio.ensure_future(one(start + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - now()))
    if tasks:
        await asyncio.wait(tasks)
    for _, writer in idle:
        writer.close()
    return results


def main(argv: list[str]) -> None:
    url, body_file, rate, seconds = argv[0], argv[1], float(argv[2]), float(argv[3])
    with open(body_file, "rb") as f:
        body = f.read()
    started = time.perf_counter()
    try:
        import uvloop

        results = uvloop.run(run(url, body, rate, seconds))
    except ImportError:  # the plain loop is slower, not wrong
        results = asyncio.run(run(url, body, rate, seconds))
    out = summarize(results, seconds)
    out["wall_s"] = time.perf_counter() - started
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
