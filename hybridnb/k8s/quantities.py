"""Kubernetes resource quantities from numbers: CPU cores and bytes.

>>> cpu_quantity(0.5), memory_quantity(8 * 2**30)
('500m', '8Gi')
"""

from __future__ import annotations


def cpu_quantity(cores: float) -> str:
    """A Kubernetes CPU quantity: whole cores as ``"2"``, fractions in millicores.

    Strings, not numbers: the Dask CRDs type every quantity as a string.

    >>> cpu_quantity(2.0), cpu_quantity(1.25)
    ('2', '1250m')
    """
    if cores < 0:
        raise ValueError(f"a CPU quantity cannot be negative, got {cores!r}")
    if float(cores).is_integer():
        return str(int(cores))
    return f"{max(1, round(cores * 1000))}m"


def memory_quantity(n_bytes: int | float) -> str:
    """A Kubernetes memory quantity: the largest exact binary suffix, else bytes.

    >>> memory_quantity(256 * 2**20), memory_quantity(1_500_000_000)
    ('256Mi', '1500000000')
    """
    n = int(n_bytes)
    if n < 0:
        raise ValueError(f"a memory quantity cannot be negative, got {n_bytes!r}")
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)
