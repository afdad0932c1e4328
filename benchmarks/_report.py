"""Shared by the benchmarks: alternate runs, print a table, write build/bench/NAME.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "build" / "bench"


def alternate(cases: dict[str, Callable[[], float]], repeat: int, warmup: int = 2
              ) -> dict[str, list[float]]:
    """Run each case ``warmup`` times, then ``repeat`` rounds, alternating within a round.

    Each callable returns its own measurement (seconds, or any figure).
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            samples[name].append(fn())
    return samples


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """Wrap ``fn`` so that it returns its wall time in seconds."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0}


def report(name: str, raw: dict[str, list[float]], figures: dict[str, float],
           targets: dict[str, str], unit: str = "s") -> Path:
    """Print a table of the raw samples' medians and the figures; write the JSON file."""
    print(f"\n{name}  ({platform.python_version()}, {os.cpu_count()} cpus)")
    print(f"{'case':<32}{'median':>12}{'min':>12}{'max':>12}")
    for case, values in raw.items():
        s = summary(values)
        print(f"{case:<32}{s['median']:>12.4g}{s['min']:>12.4g}{s['max']:>12.4g}  {unit}")
    for key, value in figures.items():
        target = f"   target {targets[key]}" if key in targets else ""
        print(f"{key:<32}{value:>12.4g}{target}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"name": name, "unit": unit, "raw": raw,
                               "summary": {k: summary(v) for k, v in raw.items()},
                               "figures": figures, "targets": targets,
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "time": time.time()}, indent=2))
    tmp.replace(path)
    print(f"wrote {path}")
    return path
