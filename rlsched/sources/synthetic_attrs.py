"""GPU attributes for workloads that record none (WfCommons, STG).

They are synthetic, so they must be stable: a task's kind and memory come from
a hash of its *category* (the tool it runs), never from global randomness, so
every run and every machine sees the same workload.
"""

from __future__ import annotations

import zlib

MEMORY_CHOICES_GIB = (1.0, 2.0, 4.0, 8.0, 12.0, 16.0)


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def synthetic_kind(category: str) -> str:
    return "memory" if stable_hash(category) % 3 == 0 else "compute"


def synthetic_memory_gib(category: str, measured_bytes: float | None) -> float:
    """Host memory measured by the workflow, if any, scaled into a GPU's range;
    otherwise a size drawn by hashing the category."""
    if measured_bytes:
        return round(min(max(measured_bytes / 2**30, 0.5), 20.0), 2)
    return MEMORY_CHOICES_GIB[stable_hash(category + "/mem") % len(MEMORY_CHOICES_GIB)]
