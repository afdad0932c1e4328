"""Endpoint serving against its peers, one load generator (wrk) for every server.

1. Overhead: hybridnb (one replica, batching off) against a hand-written FastAPI +
   uvicorn handler (``_fastapi_model.py``) serving the same 64-256-256-10 MLP weights,
   at 1, 8 and 32 connections. Targets: throughput ≥ 0.9× at 32 connections; added
   p50 (hybridnb's p50 − the peer's, same concurrency) ≤ 0.5 ms at 1 and 8.
2. Batching: hybridnb with batching on against off, at 32 connections, on a
   compute-bound model. Targets: throughput ≥ 2.5×, p99 ≤ 1.5× (on/off).
3. KServe's Python model server (``_kserve_model.py``, the ``kserve`` package from its
   own venv, ``build/peers/kserve``, made by ``benchmarks/setup_peers.sh``) on the same
   MLP weights, with ``--kserve``: reported, no target.

Every server is a subprocess on a loopback port with one torch thread and the same
uvicorn options (:func:`hybridnb.serve.server.uvicorn_options`; KServe's own, which
pick the same parser and loop). After a warm-up round, each round runs every case once,
in turn; ratios and differences are taken within a round (neighbouring runs see the
same machine) and their median over rounds is the figure. Each run also records the
server's CPU seconds per request (psutil), which moves little with other load.

Run: ``python benchmarks/bench_serve.py [--repeat N] [--seconds S] [--kserve]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _report import report

HERE = Path(__file__).resolve().parent
KSERVE_VENV = HERE.parent / "build" / "peers" / "kserve"
CONNECTIONS = (1, 8, 32)
BATCH_CONNECTIONS = 32

Result = dict[str, float]


def _wrk(url: str, script: str, connections: int, seconds: float) -> Result:
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        start_new_session=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:  # a server that answers errors fast is not faster
        raise RuntimeError(f"{bad.group(1)} error responses from {url}:\n{out}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    failed = sum(map(int, socket_errors.groups())) if socket_errors else 0
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def percentile(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if m is None:
            raise RuntimeError(f"no p{p} in wrk's output:\n{out}")
        return float(m.group(1)) * scale[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if failed > 0.01 * float(total.group(1)):  # wrk's 2 s timeout: a stalled server
        raise RuntimeError(f"{failed} socket errors or timeouts from {url}:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "requests": float(total.group(1)),
        "socket_errors": float(failed),
    }


def _lua(work: Path, name: str, body: dict) -> str:
    path = work / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    return str(path)


def _cpu(pid: int) -> float:
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with code {proc.returncode}")
        try:
            httpx.get(url)  # any answer will do (405): it listens
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _start_peer(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start a peer server on a free loopback port (its last argument); wait until it listens.

    The port is free when picked but the peer binds it later (KServe takes seconds to
    import), so another process may take it first: then try again on another port.
    """
    for attempt in range(3):
        port = _free_port()
        # A session of its own, as hybridnb's servers have (start_server): with the
        # kernel's autogroup scheduling, a session is a CPU-share unit on a busy machine.
        proc = subprocess.Popen([*argv, str(port)], env=env, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url + "/v2/models/mlp/infer", proc)
            return proc, url
        except RuntimeError:
            proc.terminate()
            proc.wait(10)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _kserve_python() -> Path:
    python = KSERVE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["bash", str(HERE / "setup_peers.sh")], check=True)
    return python


def _rounds(
    cases: dict[str, Callable[[], Result]], repeat: int, warmup: int = 1
) -> dict[str, list[Result]]:
    """Every case once per round, in turn; the warm-up rounds are dropped."""
    kept: dict[str, list[Result]] = {name: [] for name in cases}
    for r in range(warmup + repeat):
        for name, fn in cases.items():
            res = fn()
            print(
                f"  round {r}{' (warm-up)' if r < warmup else ''} {name}: "
                f"{res['rps']:.0f} req/s, p50 {res['p50_ms']:.3f} ms, "
                f"p99 {res['p99_ms']:.3f} ms",
                flush=True,
            )
            if r >= warmup:
                kept[name].append(res)
    return kept


def _paired(runs: dict[str, list[Result]], a: str, b: str, key: str, op: str) -> float:
    """Median over rounds of ``a[key] / b[key]`` (op ``/``) or ``a[key] - b[key]``."""
    pairs = zip(runs[a], runs[b], strict=True)
    values = [x[key] / y[key] if op == "/" else x[key] - y[key] for x, y in pairs]
    return statistics.median(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--kserve", action=argparse.BooleanOptionalAction, default=None,
                        help="also run KServe's server (default: when build/peers/kserve "
                        "exists; `make bench-peers` makes it)")
    args = parser.parse_args(argv)
    if args.kserve is None:
        args.kserve = (KSERVE_VENV / "bin" / "python").exists()
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    import torch

    from hybridnb.serve import ServeSettings, bundle, start_server

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    torch.manual_seed(0)
    mlp = bundle(
        torch.nn.Sequential(
            torch.nn.Linear(64, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 10),
        ),
        torch.zeros(1, 64),
        work / "mlp",
        name="mlp",
    )
    big = bundle(
        torch.nn.Sequential(
            torch.nn.Linear(256, 4096),
            torch.nn.ReLU(),
            torch.nn.Linear(4096, 4096),
            torch.nn.ReLU(),
            torch.nn.Linear(4096, 10),
        ),
        torch.zeros(1, 256),
        work / "big",
        name="big",
    )
    body64 = _lua(
        work,
        "mlp",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]},
    )
    body256 = _lua(
        work,
        "big",
        {"inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]},
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    peers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    servers = []
    try:
        off = ServeSettings(batching=False, threads=1)
        servers.append(start_server(mlp.path, settings=off, record=False, name="hybridnb"))
        servers.append(start_server(big.path, settings=off, record=False, name="big-off"))
        servers.append(
            start_server(
                big.path,
                record=False,
                name="big-on",
                settings=ServeSettings(max_batch_size=32, max_latency_ms=5, threads=1),
            )
        )
        peers["fastapi"] = _start_peer(
            [sys.executable, str(HERE / "_fastapi_model.py"), str(mlp.path)], env
        )
        if args.kserve:
            peers["kserve"] = _start_peer(
                [str(_kserve_python()), str(HERE / "_kserve_model.py"), str(mlp.path)],
                {**env, "PYTHONPATH": str(HERE)},
            )
        targets = {"hybridnb": (servers[0].pid, servers[0].url)}
        targets.update({name: (proc.pid, url) for name, (proc, url) in peers.items()})

        def case(pid: int, url: str, script: str, connections: int) -> Callable[[], Result]:
            def run() -> Result:
                before = _cpu(pid)
                res = _wrk(url, script, connections, args.seconds)
                res["cpu_us_per_request"] = (_cpu(pid) - before) / max(res["requests"], 1) * 1e6
                return res

            return run

        cases = {
            f"{name} c={c}": case(pid, url + "/v2/models/mlp/infer", body64, c)
            for c in CONNECTIONS
            for name, (pid, url) in targets.items()
        }
        for name, srv in (("batching off", servers[1]), ("batching on", servers[2])):
            cases[f"big, {name} c={BATCH_CONNECTIONS}"] = case(
                srv.pid, srv.url + "/v2/models/big/infer", body256, BATCH_CONNECTIONS
            )
        runs = _rounds(cases, args.repeat)
    finally:
        for s in servers:
            s.stop(grace=10)
        for proc, _ in peers.values():
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, float] = {}
    for peer in [p for p in targets if p != "hybridnb"]:
        for c in CONNECTIONS:
            a, b = f"hybridnb c={c}", f"{peer} c={c}"
            figures[f"hybridnb/{peer} rps c={c}"] = _paired(runs, a, b, "rps", "/")
            figures[f"added p50 ms vs {peer} c={c}"] = _paired(runs, a, b, "p50_ms", "-")
        figures[f"cpu us/req {peer} c=32"] = statistics.median(
            r["cpu_us_per_request"] for r in runs[f"{peer} c=32"]
        )
    figures["cpu us/req hybridnb c=32"] = statistics.median(
        r["cpu_us_per_request"] for r in runs["hybridnb c=32"]
    )
    on, off_ = f"big, batching on c={BATCH_CONNECTIONS}", f"big, batching off c={BATCH_CONNECTIONS}"
    figures["batching on/off rps"] = _paired(runs, on, off_, "rps", "/")
    figures["batching on/off p99"] = _paired(runs, on, off_, "p99_ms", "/")
    if "kserve" not in targets:
        print("kserve model server: not run (pass --kserve; setup: benchmarks/setup_peers.sh)")
    raw = {
        f"{name} {key}": [r[key] for r in results]
        for name, results in runs.items()
        for key in ("rps", "p50_ms", "p99_ms")
    }
    report(
        "serve",
        raw,
        figures,
        {
            "hybridnb/fastapi rps c=32": ">= 0.9",
            "added p50 ms vs fastapi c=1": "<= 0.5",
            "added p50 ms vs fastapi c=8": "<= 0.5",
            "batching on/off rps": ">= 2.5",
            "batching on/off p99": "<= 1.5",
        },
        unit="",
    )


if __name__ == "__main__":
    main()
