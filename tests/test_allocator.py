"""Freed heap memory goes back to the system when the core asks, and malloc's figures add up."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from voicewatch.allocator import heap_bytes, release_free_memory
from voicewatch.control import resident_bytes

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallinfo2 are glibc's")


def test_holes_freed_between_live_blocks_leave_the_process_only_when_trimmed() -> None:
    blocks = [np.ones(100_000 // 8) for _ in range(640)]  # 64 MB of heap blocks, under the mmap threshold
    del blocks[::2]  # 32 MB of holes between live blocks: nothing at the heap's top for free() to give back
    free_before, resident_before = heap_bytes()["heap_free"], resident_bytes()
    assert free_before >= 30_000_000
    assert release_free_memory()
    assert resident_before - resident_bytes() >= 25_000_000
    assert heap_bytes()["heap_free"] >= 30_000_000  # still free for reuse, just no longer resident
    assert len(blocks) == 320


def test_heap_figures_count_what_is_allocated() -> None:
    before = heap_bytes()
    block = np.ones(5_000)  # 40 KB: from the heap, not a mapping of its own
    assert heap_bytes()["heap_in_use"] - before["heap_in_use"] >= 40_000
    assert block.sum() == 5_000
