"""Hands freed heap memory back to the operating system, where the C library keeps it otherwise.

glibc's malloc keeps what a thread frees in that thread's arena for reuse; with a batch of windows
freed by one thread and allocated by another every tick, the arenas' free space adds up to far more
than is ever in use at once. `malloc_trim` releases it. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable


def _find_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


_TRIM = _find_trim()

TRIM_EVERY_S = 10.0
"""How often a long-running process (the core, each shard worker) hands its free heap back."""


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system; False where the C library cannot."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _find_mallinfo2() -> Callable[[], _MallInfo2] | None:
    name = ctypes.util.find_library("c")
    function = getattr(ctypes.CDLL(name), "mallinfo2", None) if name else None
    if function is not None:
        function.restype = _MallInfo2
    return function


_MALLINFO2 = _find_mallinfo2()


def heap_bytes() -> dict[str, int]:
    """What malloc holds (glibc 2.33 and later; empty elsewhere): `in_use` in its arenas, `free` there (kept for
    reuse, resident until trimmed) and `mmapped` (large blocks, each its own mapping)."""
    if _MALLINFO2 is None:
        return {}
    info = _MALLINFO2()
    return {"heap_in_use": info.uordblks, "heap_free": info.fordblks, "mmapped": info.hblkhd}


def resident_bytes() -> int:
    """This process's resident set (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
