"""Save what a real collector recorded, for the plot tests (run by hand, not by pytest).

    hybridnb demo --out build/demo
    python tests/monitor/data/record.py build/demo

writes ``demo-metrics.jsonl.gz`` (every sample of the series the dashboard queries, from
the demo's ``metrics.db``; staleness markers as ``null``) and ``demo-run-metrics.jsonl``
(the training run's own metrics lines) beside this file.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import sys
from pathlib import Path

from hybridnb.monitor import SampleStore
from hybridnb.monitor.plots import QUERIES
from hybridnb.monitor.promql import metric_names, parse

HERE = Path(__file__).resolve().parent


def main(demo: Path) -> None:
    store = SampleStore(demo / "metrics.db")
    names = sorted({n for q in QUERIES.values() for n in metric_names(parse(q))})
    lines = [json.dumps({"end": store.latest_time(), "source": "hybridnb demo"})]
    for wanted in names:
        for name, labels, ts, vals in store.select(wanted):
            lines.append(json.dumps({
                "name": name, "labels": labels, "ts": [round(t, 3) for t in ts.tolist()],
                "values": [None if math.isnan(v) else v for v in vals.tolist()]},
                separators=(",", ":")))
    (HERE / "demo-metrics.jsonl.gz").write_bytes(
        gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    shutil.copyfile(demo / "run" / "metrics.jsonl", HERE / "demo-run-metrics.jsonl")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
