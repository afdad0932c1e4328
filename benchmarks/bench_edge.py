"""Edge sites: a rollout over a 20 Mbit/s link against rsync, and the buffer's disk use.

1. **Transfer**: a bundle of about 25 MB (``model.pt2`` and ``weights.safetensors`` of a
   3M-parameter MLP, plus its small files) to an edge host, a network namespace whose
   veth is capped at 20 Mbit/s both ways with ``tc tbf``. hybridnb: :func:`push` to the
   host's agent over TLS, each file's blob checked by the agent before it is kept
   (``transfer_seconds``: from the first request to the last blob complete and verified;
   the centre's own ``load_bundle`` check of the bundle before sending is reported on
   its own). Peer: ``rsync -a`` of the same files over ssh to Debian's sshd in the same
   host (a fresh directory each time, so both send every byte). The two alternate,
   after one warm-up each, several repetitions; each repetition pushes another bundle of
   the same size (fresh digests: the agent sends a blob it holds only once). Target:
   hybridnb's median at most 1.1x rsync's. Also reported: the whole rollout (transfer,
   staging, a replica started, smoke request, switch) with ``watch_s`` 0.
2. **Buffer**: with the edge's link down, 10,000 requests from local clients to the edge
   endpoint; the buffer's disk use (SQLite pages in use, and the files on disk with the
   write-ahead log) once they are all in, per 10,000 requests (it holds the counter
   snapshots of that time too). Beside it, the same records as JSON lines: what a plain
   request log would take.

Needs root, iproute2, ``rsync`` and ``openssh-server``. Run:
``.venv/bin/python benchmarks/bench_edge.py [--repeat 3]`` (writes build/bench/edge.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import alternate, report

MBIT = 20
CLIENT = Path(__file__).resolve().parents[1] / "tests" / "edge" / "_client.py"


def make_bundles(root: Path, n: int) -> list[Path]:
    import torch

    from hybridnb.serve import bundle

    out = []
    for i in range(n):
        torch.manual_seed(i)
        model = torch.nn.Sequential(torch.nn.Linear(8, 1 << 18), torch.nn.ReLU(),
                                    torch.nn.Linear(1 << 18, 3))
        out.append(bundle(model, torch.randn(2, 8), root / f"b{i}", name="mlp",
                          version=i + 1).path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    from hybridnb.serve.edge import manifest_of, push, start_agent
    from hybridnb.testing.netns import NetnsHosts, skip_reason
    from hybridnb.testing.sshd import SSHDaemon, sshd_skip_reason

    reason = skip_reason() or sshd_skip_reason() or (
        None if shutil.which("rsync") else "rsync is not installed (apt-get install rsync)")
    if reason:
        sys.exit(f"bench_edge needs {reason}")
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    bundles = make_bundles(work / "bundles", 2 * (args.repeat + 1))
    total = manifest_of(bundles[0], verify=False)[0].total_bytes
    with NetnsHosts(1, workdir=work / "netns") as (host,), \
            SSHDaemon(host, workdir=work / "sshd") as sshd:
        host.rate_limit(MBIT)
        agent = start_agent(work / "agent", site="bench", control=f"{host.address}:8443",
                            front="127.0.0.1:8080", wrap=host.command,
                            options={"rollout": {"watch_s": 0, "stall_timeout_s": 10},
                                     "buffer": {"sample_interval_s": 5,
                                                "max_bytes": "256MiB"}})
        try:
            client = agent.client(timeout=10.0, stall_timeout=10.0)
            pushes: list[dict[str, float]] = []
            queue = list(bundles)

            def hybridnb_push() -> float:
                path = queue.pop(0)
                t0 = time.perf_counter()
                manifest_of(path)  # what push does first: load_bundle, every digest
                verify = time.perf_counter() - t0
                r = push(path, client=client, site="bench", verify=False)
                # Only graph.json (the same architecture) may be there already.
                assert r.ok and r.bytes_sent > 0.99 * r.bytes_total, r
                pushes.append({"transfer": r.transfer_seconds, "rollout": r.seconds,
                               "verify": verify})
                return r.transfer_seconds

            targets = iter(range(10**6))
            (work / "rsync").mkdir()
            ssh = (f"ssh -p {sshd.port} -i {sshd.client_key} -o StrictHostKeyChecking=no "
                   "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")

            def rsync() -> float:
                dest = work / "rsync" / f"d{next(targets)}"
                src = bundles[0]
                t0 = time.perf_counter()
                subprocess.run(["rsync", "-a", "-e", ssh, f"{src}/",
                                f"root@{host.address}:{dest}/"], check=True)
                took = time.perf_counter() - t0
                shutil.rmtree(dest, ignore_errors=True)
                return took

            raw = alternate({"hybridnb push (transfer)": hybridnb_push,
                             "rsync over ssh": rsync}, repeat=args.repeat, warmup=1)
            figures: dict[str, float] = buffer_use(host, agent, client, args.requests, work)
            client.close()
        finally:
            agent.stop()
    import statistics

    ours = statistics.median(raw["hybridnb push (transfer)"])
    peer = statistics.median(raw["rsync over ssh"])
    measured = pushes[1:]  # the first was the warm-up
    figures.update({
        "bundle_bytes": float(total), "link_mbit_s": float(MBIT),
        "line_rate_seconds": total * 8 / (MBIT * 1e6),
        "push_over_rsync": ours / peer,
        "push_rollout_seconds_median": statistics.median(p["rollout"] for p in measured),
        "push_local_verify_seconds_median": statistics.median(p["verify"] for p in measured),
    })
    targets = {"push_over_rsync": "<= 1.1"}
    report("edge", raw, figures, targets)
    print(f"push_over_rsync {figures['push_over_rsync']:.3f}: "
          f"{'met' if figures['push_over_rsync'] <= 1.1 else 'missed'} (target <= 1.1)")
    shutil.rmtree(work, ignore_errors=True)


def buffer_use(host: Any, agent: Any, client: Any, n: int, work: Path) -> dict[str, float]:
    """Link down, ``n`` local requests answered, then what the buffer holds on disk."""
    import orjson

    from hybridnb.testing.waiting import wait_until

    start = client.status().buffer
    host.run(["ip", "link", "set", "eth0", "down"])
    stop, out = work / "clients.stop", work / "clients.json"
    proc = subprocess.Popen(host.command([sys.executable, str(CLIENT), "http://127.0.0.1:8080",
                                          str(stop), str(out), "--concurrency", "4"]))
    progress = out.with_suffix(".progress")

    def done() -> int:
        try:
            return int(json.loads(progress.read_text())["done"])
        except (OSError, ValueError, KeyError):
            return 0

    wait_until(lambda: done() >= n, timeout=1800, interval=0.05, what=f"{n} requests")
    stop.write_text("stop")
    proc.wait(60)
    counts = json.loads(out.read_text())
    time.sleep(1.0)  # the front's last records reach the disk (flushed every 0.25 s)
    host.run(["ip", "link", "set", "eth0", "up"])
    stats = wait_until(lambda: client.status().buffer, timeout=60, what="the agent again",
                       ignore=(Exception,))
    answered = counts["ok"] + counts["failed"]
    records, after, lines = 0, 0, 0
    while True:  # read (not acknowledge) what is buffered, to size it as JSON lines
        page = client.records(after, limit=10_000)
        for rec in page.records:
            lines += len(orjson.dumps(rec)) + 1
        records += len(page.records)
        after = page.last
        if not page.more:
            break
    per = 10_000 / answered
    print(f"buffer: {answered} requests ({counts['failed']} failed), {records} records, "
          f"{stats['bytes'] - start['bytes']} bytes in pages, {stats['file_bytes']} on disk")
    return {"buffer_requests": float(answered), "buffer_failed_requests": float(counts["failed"]),
            "buffer_records": float(records),
            "buffer_bytes_per_10k_requests": (stats["bytes"] - start["bytes"]) * per,
            "buffer_file_bytes_per_10k_requests": (stats["file_bytes"] - start["file_bytes"])
            * per,
            "json_lines_bytes_per_10k_requests": lines * per}


if __name__ == "__main__":
    main()
