"""The built-in default layer: one ``local`` site describing this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def machine_memory() -> int:
    """Physical memory of this machine in bytes (no psutil import needed)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def machine_gpus() -> int:
    """NVIDIA GPUs the driver exposes, counted without importing torch."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return sum(1 for _ in gpus.iterdir()) if gpus.is_dir() else 0


def builtin_default() -> dict[str, Any]:
    """The embedded default: everything runs on this machine, which may hold any data."""
    return {
        "sites": {
            "local": {
                "tier": "private",
                "backend": "local",
                "capacity": {
                    "cpu": os.cpu_count() or 1,
                    "memory": machine_memory(),
                    "gpu": machine_gpus(),
                },
                "network": {"bandwidth_mbps": 10000, "latency_ms": 0.1},
                "classifications": ["public", "internal", "confidential", "pii"],
            }
        }
    }
