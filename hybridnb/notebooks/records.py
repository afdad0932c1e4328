"""``hybridnb.record(name, value)``: what a notebook run reports back to its runner.

Inside ``hybridnb run``/``sweep`` the runner sets ``$HYBRIDNB_RECORD_FILE`` and each
record is appended to it as a JSON line (one ``write`` per record, so lines never
interleave); interactively, records stay in this process (:func:`recorded`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

ENV = "HYBRIDNB_RECORD_FILE"
_local: dict[str, Any] = {}


def record(name: str, value: Any) -> Any:
    """Record ``value`` (JSON-serializable) under ``name`` for the run's results table.

    >>> record("accuracy", 0.97)
    0.97
    >>> recorded()["accuracy"]
    0.97
    """
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        value = None if math.isnan(value) else str(value)
    line = json.dumps({"name": str(name), "value": value}, default=str) + "\n"
    path = os.environ.get(ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    _local[str(name)] = value
    return value


def recorded() -> dict[str, Any]:
    """What this process recorded (the last value of each name)."""
    return dict(_local)


def format_value(value: Any, name: str = "") -> str:
    """A recorded value as people read it: a ratio whose ``name`` says *accuracy* as a
    percentage, other floats to 4 significant digits, lists and mappings on one line
    (the CLI's summaries and the HTML report use it).

    >>> format_value(0.9777777777777777), format_value(0.98134, "test_accuracy")
    ('0.9778', '98.13 %')
    >>> format_value(["edge1", "local"]), format_value({"train": 1437, "test": 180})
    ('edge1, local', 'train 1437, test 180')
    >>> format_value(None), format_value(True), format_value(float("nan"))
    ('–', 'true', '–')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if "accuracy" in name and 0.0 <= value <= 1.0:
            return f"{100 * value:.2f} %"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v, str(k))}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, name) for v in value) or "none"
    return str(value)


def read_records(path: str | Path) -> dict[str, Any]:
    """The records in a record file: the last value of each name."""
    out: dict[str, Any] = {}
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            out[item["name"]] = item["value"]
    return out
