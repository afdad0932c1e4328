"""Endpoint throughput with wrk: hybridnb (1 replica, batching off) against plain
FastAPI + uvicorn serving the same 64-256-256-10 MLP (target ratio ≥ 0.9), and
hybridnb with batching on against off on a compute-bound model (target ≥ 2.5×).

Both servers run as subprocesses on loopback; wrk posts the same OIP v2 JSON body at
32 connections for a few seconds per run, alternating. Besides requests/s, each run
records the server process's CPU seconds per request (psutil): on a shared machine
that figure barely moves with other load, while requests/s does.

``--kserve`` also runs KServe's Python model server (``kserve.ModelServer``) on the
same model, from its own venv ``build/bench/kserve-venv`` (created on first use: kserve
pins psutil/pandas below this project's requirements); without the flag it is
reported as not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import alternate, report

SECONDS = 4
CONNECTIONS = 32

PEER = r'''
import sys, numpy as np, torch, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
import orjson
torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                            torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
app = FastAPI()

@app.post("/v2/models/mlp/infer")
async def infer(request: Request):
    body = await request.json()
    t = body["inputs"][0]
    x = torch.from_numpy(np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]))
    with torch.inference_mode():
        y = model(x).numpy()
    return Response(orjson.dumps({"model_name": "mlp", "outputs": [{"name": "output",
        "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}]}),
        media_type="application/json")

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
'''


KSERVE_PEER = r'''
import sys, numpy as np, torch, kserve
from kserve import Model, ModelServer
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                          torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()

class MLP(Model):
    def __init__(self):
        super().__init__("mlp")
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, (bytes, bytearray)):
            import orjson
            payload = orjson.loads(payload)
        if isinstance(payload, dict):
            t = payload["inputs"][0]
            x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        else:  # an InferRequest
            x = payload.inputs[0].as_numpy()
        with torch.inference_mode():
            y = net(torch.from_numpy(x)).numpy()
        return {"model_name": "mlp", "outputs": [{"name": "output", "datatype": "FP32",
                "shape": list(y.shape), "data": y.ravel().tolist()}]}

ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]), workers=1).start([MLP()])
'''


def _kserve_python() -> Path:
    """The venv holding kserve, created on first use (kserve's pins clash with ours)."""
    venv = Path(__file__).resolve().parents[1] / "build" / "bench" / "kserve-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "kserve", "torch",
                        "orjson"], check=True)
    return python


def _cpu(pid: int) -> float:
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)  # kserve's workers, if any
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _wrk(url: str, body: dict, seconds: int = SECONDS) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n")
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
                              "-s", script, url], capture_output=True, text=True,
                             timeout=seconds + 30).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} non-2xx responses from {url}:\n{out}")
    return {"rps": rps, "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else 0.0,
            "requests": float(total.group(1)) if total else 0.0}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url)  # any answer will do (405): it listens
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def main(repeat: int = 3, kserve: bool = False) -> None:
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    import torch

    from hybridnb.serve import ServeSettings, bundle, start_server

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    small = bundle(mlp, torch.zeros(1, 64), work / "mlp", name="mlp")
    big = bundle(torch.nn.Sequential(torch.nn.Linear(256, 4096), torch.nn.ReLU(),
                                     torch.nn.Linear(4096, 4096), torch.nn.ReLU(),
                                     torch.nn.Linear(4096, 10)),
                 torch.zeros(1, 256), work / "big", name="big")
    body64 = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                          "data": [0.5] * 64}]}
    body256 = {"inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32",
                           "data": [0.5] * 256}]}
    port = _free_port()
    peer_file = work / "peer.py"
    peer_file.write_text(PEER)
    peer = subprocess.Popen([sys.executable, str(peer_file), str(port)])
    kpeer = None
    if kserve:
        kport = _free_port()
        (work / "kserve_peer.py").write_text(KSERVE_PEER)
        kpeer = subprocess.Popen([str(_kserve_python()), str(work / "kserve_peer.py"),
                                  str(kport), str(_free_port())])
    servers = []
    try:
        peer_url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
        _wait(peer_url)
        off = ServeSettings(batching=False, threads=1)
        servers.append(start_server(small.path, settings=off, record=False))
        servers.append(start_server(big.path, settings=off, record=False, name="big-off"))
        servers.append(start_server(big.path, record=False, name="big-on", settings=ServeSettings(
            max_batch_size=32, max_latency_ms=5, threads=1)))
        hyb, big_off, big_on = (s.url for s in servers)
        figures_raw: dict[str, list[dict[str, float]]] = {}

        def case(name: str, url: str, body: dict, pid: int):
            def go() -> float:
                before = _cpu(pid)
                res = _wrk(url, body)
                res["cpu_us_per_request"] = (_cpu(pid) - before) / max(res["requests"], 1) * 1e6
                figures_raw.setdefault(name, []).append(res)
                return res["rps"]
            return go

        cases = {
            "fastapi+uvicorn rps": case("fastapi", peer_url, body64, peer.pid),
            "hybridnb (no batching) rps": case("hybridnb", hyb + "/v2/models/mlp/infer",
                                               body64, servers[0].pid),
            "big model, batching off rps": case("off", big_off + "/v2/models/big/infer",
                                                body256, servers[1].pid),
            "big model, batching on rps": case("on", big_on + "/v2/models/big/infer",
                                               body256, servers[2].pid),
        }
        if kpeer is not None:
            kurl = f"http://127.0.0.1:{kport}/v2/models/mlp/infer"
            _wait(kurl, timeout=120)
            cases["kserve model server rps"] = case("kserve", kurl, body64, kpeer.pid)
        raw = alternate(cases, repeat, warmup=1)
    finally:
        for s in servers:
            s.stop(grace=10)
        for proc in (peer, kpeer):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, key: str) -> float:
        values = sorted(r[key] for r in figures_raw[name][1:])  # [0] is the warm-up
        return values[len(values) // 2]

    figures = {
        "ratio hybridnb/fastapi rps": med("hybridnb", "rps") / med("fastapi", "rps"),
        "p50 ms fastapi": med("fastapi", "p50_ms"),
        "p50 ms hybridnb": med("hybridnb", "p50_ms"),
        "added p50 ms": med("hybridnb", "p50_ms") - med("fastapi", "p50_ms"),
        "batching on/off rps": med("on", "rps") / med("off", "rps"),
        "cpu us/request fastapi": med("fastapi", "cpu_us_per_request"),
        "cpu us/request hybridnb": med("hybridnb", "cpu_us_per_request"),
        "ratio cpu/request fastapi/hybridnb": med("fastapi", "cpu_us_per_request")
        / med("hybridnb", "cpu_us_per_request"),
    }
    if "kserve" in figures_raw:
        figures["ratio hybridnb/kserve rps"] = med("hybridnb", "rps") / med("kserve", "rps")
    else:
        print("kserve model server: not run (pass --kserve)")
    report("serve", raw, figures, {"ratio hybridnb/fastapi rps": ">= 0.9",
                                   "batching on/off rps": ">= 2.5"}, unit="req/s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--kserve"]
    main(int(args[0]) if args else 3, kserve="--kserve" in sys.argv)
