"""Byte sizes as people write them (``"16GiB"``, ``"512 MB"``, ``1024``)."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
    "ti": 2**40, "tib": 2**40, "pi": 2**50, "pib": 2**50,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_bytes(value: str | int | float) -> int:
    """Number of bytes in ``value``.

    >>> parse_bytes("16GiB")
    17179869184
    >>> parse_bytes("1.5 GB")
    1500000000
    >>> parse_bytes(512)
    512
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '16GiB', got {value!r}")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        match = _PATTERN.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"expected a size such as '16GiB' or '512MB', got {value!r}")
        n = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if n < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return int(n)


def format_bytes(n: int | float) -> str:
    """Short human form of a byte count.

    >>> format_bytes(17179869184)
    '16.0 GiB'
    >>> format_bytes(999)
    '999 B'
    """
    units = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
    for unit, size in units:
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
