"""Shared by the benchmarks: alternate runs, print a table, write build/bench/NAME.json."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from hybridnb.fileio import atomic_write_json

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


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages (others' work shares the cores)."""
    try:
        return os.getloadavg()
    except OSError:  # not every platform has one
        return (float("nan"),) * 3


_TARGET = re.compile(r"\s*(>=|<=|>|<|≥|≤)\s*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", re.I)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "≥": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    "≤": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


def verdict(value: float, target: str) -> str:
    """``"met"``/``"missed"`` for a target that opens with a comparison, else ``"reported"``.

    >>> verdict(0.99, ">= 0.98"), verdict(3.0, "<= 1.5 s"), verdict(1.0, "reported only")
    ('met', 'missed', 'reported')
    """
    match = _TARGET.match(target)
    if match is None or value != value:  # no comparison, or NaN: nothing to judge
        return "reported"
    return "met" if _OPS[match.group(1)](value, float(match.group(2))) else "missed"


def report(name: str, raw: dict[str, list[float]], figures: dict[str, float],
           targets: dict[str, str], unit: str = "s",
           extra: dict[str, object] | None = None) -> Path:
    """Print the raw samples' medians, then each figure next to its target, met or missed;
    write ``build/bench/NAME.json`` (``extra`` is stored with it).

    The load average is printed and stored with the figures: the cores are shared, and a
    figure taken at load 3 on 2 cores is not one taken on an idle machine.
    """
    load = load_average()
    print(f"\n{name}  ({platform.python_version()}, {os.cpu_count()} cpus, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"{'case':<44}{'median':>12}{'min':>12}{'max':>12}")
    for case, values in raw.items():
        if not values:
            continue
        s = summary(values)
        print(f"{case:<44}{s['median']:>12.4g}{s['min']:>12.4g}{s['max']:>12.4g}  {unit}")
    verdicts = {key: verdict(figures[key], target) for key, target in targets.items()
                if key in figures}
    print(f"{'figure':<44}{'value':>12}   target, verdict")
    for key, value in figures.items():
        target = f"   {targets[key]}: {verdicts[key].upper()}" if key in targets else ""
        print(f"{key:<44}{value:>12.4g}{target}")
    judged = [v for v in verdicts.values() if v != "reported"]
    print(f"targets: {judged.count('met')} met, {judged.count('missed')} missed"
          + (f" ({', '.join(k for k, v in verdicts.items() if v == 'missed')})"
             if "missed" in judged else ""))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    atomic_write_json(path, {"name": name, "unit": unit, "raw": raw,
                      "summary": {k: summary(v) for k, v in raw.items() if v},
                      "figures": figures, "targets": targets, "verdicts": verdicts,
                      "load_average": load, "python": platform.python_version(),
                      "cpus": os.cpu_count(), "time": time.time(), **(extra or {})})
    print(f"wrote {path}")
    return path

