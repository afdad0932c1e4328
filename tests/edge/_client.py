"""Local clients of an edge endpoint: send inference requests until a stop file appears.

Run as a script (in the edge's namespace): ``_client.py URL STOP_FILE OUT_FILE``. Writes
``{"ok", "failed", "errors", "versions": {version: count}, "last_version"}`` to OUT_FILE.
Each request waits for its answer, so "failed" counts every request a client saw fail.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import httpx

BODY = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                    "data": [0.5] * 8}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("stop")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    stop, out = Path(args.stop), Path(args.out)
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "errors": [], "versions": {}, "last_version": None}
    token = os.environ.get("CLIENT_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def worker() -> None:
        with httpx.Client(base_url=args.url, timeout=30, headers=headers) as client:
            while not stop.exists():
                try:
                    r = client.post("/v2/models/mlp/infer", json=BODY)
                    ok = r.status_code == 200
                    error = None if ok else f"{r.status_code} {r.text[:200]}"
                    version = r.json().get("model_version") if ok else None
                except httpx.HTTPError as exc:
                    ok, error, version = False, f"{type(exc).__name__}: {exc}", None
                with lock:
                    if ok:
                        counts["ok"] += 1
                        counts["versions"][version] = counts["versions"].get(version, 0) + 1
                        counts["last_version"] = version
                    else:
                        counts["failed"] += 1
                        if len(counts["errors"]) < 20:
                            counts["errors"].append(error)
                if args.pause:
                    time.sleep(args.pause)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    progress = out.with_suffix(".progress")
    while any(t.is_alive() for t in threads):
        with lock:
            done = counts["ok"] + counts["failed"]
        progress.write_text(json.dumps({"done": done}))
        time.sleep(0.2)
    out.write_text(json.dumps(counts))


if __name__ == "__main__":
    main()
