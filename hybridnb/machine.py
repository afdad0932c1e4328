"""What this machine can compute with: native bf16 arithmetic on the CPU.

Used by training (fall back from bf16 to fp32 where bf16 would be emulated, about 5×
slower), ``hybridnb doctor`` and the training benchmark — one answer for all three.

>>> NATIVE_BF16_FLAGS
('amx_bf16', 'avx512_bf16', 'bf16')
>>> cpu_bf16_flags("flags : fpu sse avx2 avx512_bf16\\n")
['avx512_bf16']
>>> cpu_bf16_flags("flags : fpu avx2 avx_ne_convert\\n")   # conversions only, no bf16 math
[]
>>> cpu_bf16_flags("Features : fp asimd bf16 i8mm\\n")      # Arm (aarch64)
['bf16']
"""

from __future__ import annotations

from pathlib import Path

#: CPU features with bf16 dot products/matrix multiplies: x86 AVX512-BF16 and AMX-BF16,
#: Arm's BF16 extension. (AVX-NE-CONVERT only converts to and from bf16.)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bf16 features of this CPU (Linux ``/proc/cpuinfo``; ``[]`` elsewhere).

    ``cpuinfo`` is the file's text, read from ``/proc/cpuinfo`` when ``None``.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
            break
    return sorted(f for f in flags if f in NATIVE_BF16_FLAGS)
