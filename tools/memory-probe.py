"""In-process memory probes behind docs/performance.md's Memory section (the live figures come from
`voicewatch bench --soak`).

    python tools/memory-probe.py history      # heap bytes the embedding history holds per window and per stream
    python tools/memory-probe.py tick 256     # RSS a tick of N 48 kHz windows grows by, after a trim
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from voicewatch.allocator import heap_bytes, release_free_memory
from voicewatch.config import Config
from voicewatch.control import resident_bytes
from voicewatch.history import EmbeddingHistory
from voicewatch.pipeline import Pipeline
from voicewatch.service import load_model_and_bank
from voicewatch.windows import Window, WindowBuffer


def held() -> int:
    heap = heap_bytes()
    return heap["heap_in_use"] + heap["mmapped"]


def history(streams: int = 64, seconds: int = 300, dim: int = 640) -> None:
    kept = EmbeddingHistory(seconds, 1.0, 5000)
    silence = np.zeros(4, dtype=np.float32)
    release_free_memory()
    before = held()
    for second in range(seconds + 50):
        windows = [Window(f"s{i}", 48000, float(second), second + 2.0, None, silence) for i in range(streams)]
        kept.record(windows, torch.nn.functional.normalize(torch.randn(streams, dim), dim=-1))
    release_free_memory()
    used = held() - before
    print(f"history: {used / streams / 1024:.0f} KiB per stream, {used / streams / seconds:.0f} bytes per window kept")


def tick(batch: int) -> None:
    torch.set_num_threads(1)
    config = Config()
    pipeline = Pipeline(*load_model_and_bank(config), config.detector, config.windows.hop_s, batch)
    buffers = [WindowBuffer(f"s{i}", 48000, 2.0, 1.0, 0.0, None) for i in range(batch)]
    noise = (np.random.default_rng(0).standard_normal(96000) * 0.1).astype(np.float32)
    for index in range(6):
        items = [w for b in buffers for w in b.push(noise[:96000 if index == 0 else 48000])]
        release_free_memory()
        before = resident_bytes()
        pipeline.process(items)
        del items
        heap = heap_bytes()
        print(f"tick {index} of {batch} windows: RSS +{(resident_bytes() - before) / 2**20:.0f} MiB, malloc in use "
              f"{heap['heap_in_use'] / 2**20:.0f} MiB, free {heap['heap_free'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    history() if sys.argv[1] == "history" else tick(int(sys.argv[2]))
