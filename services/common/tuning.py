"""Process-level performance knobs, one function each, applied by the server bootstrap from the service's settings.

None changes behaviour; each trades memory or fairness for speed, so each is a setting
(`CUSTODY_<SERVICE>_KEEP_FREED_MEMORY`, `_GIL_SWITCH_INTERVAL_S`, `_FREEZE_STARTUP_OBJECTS`), off by default and
turned on in a service's settings only where a benchmark showed it helps that service (A/B runs set them through
BENCH_SERVICE_SETTINGS, see bench/harness.py). Tests check both ways.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Protocol

# mallopt parameters (malloc.h) and glibc's largest mmap threshold on 64-bit systems.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Has glibc keep freed blocks for reuse instead of returning them to the system at once; False where the C
    library is not glibc (nothing to tune).

    By default blocks of 128 KiB and more are separate mappings, unmapped when freed, and the heap is trimmed
    eagerly: every 1 MiB upload chunk then arrives in fresh pages, which a virtual machine is slow to hand out
    (uploads ran about a third faster with this). The process keeps up to its peak instead."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MAX_MMAP_THRESHOLD_BYTES)
    )


def set_gil_switch_interval(seconds: float) -> None:
    """The event loop hands database work to threads and back on every call; with Python's default 5 ms switch
    interval a busy thread makes the others wait that long for each hand-off."""
    sys.setswitchinterval(seconds)


def freeze_startup_objects() -> None:
    """What start-up built (modules, descriptors, the app) lives as long as the process: moving it out of the
    collector's reach keeps full collections, and so the latency tail, proportional to per-call garbage only."""
    gc.collect()
    gc.freeze()


class Knobs(Protocol):
    keep_freed_memory: bool
    gil_switch_interval_s: float


def apply_process_knobs(settings: Knobs) -> None:
    """The knobs that must be set before the server starts (freeze_startup_objects runs once it has)."""
    if settings.keep_freed_memory:
        keep_freed_memory()
    set_gil_switch_interval(settings.gil_switch_interval_s)
