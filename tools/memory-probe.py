"""In-process memory probes behind docs/performance.md's Memory section (the live figures come from
`voicewatch bench --soak`).

    python tools/memory-probe.py history      # heap bytes the embedding history holds per window and per stream
    python tools/memory-probe.py tick 256     # RSS a tick of N 48 kHz windows grows by, after a trim
    python tools/memory-probe.py buffers 64   # heap bytes N 48 kHz stereo s16 streams' ingest holds per stream
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from voicewatch.allocator import heap_bytes, release_free_memory, resident_bytes
from voicewatch.config import Config
from voicewatch.history import EmbeddingHistory
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.reload import load_model_and_bank
from voicewatch.sourceframes import FrameEncoder
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


def buffers(streams: int, seconds: int = 30) -> None:
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    frame = (np.random.default_rng(0).standard_normal((4800, 2)) * 3000).astype("<i2")
    encoders = [FrameEncoder(f"s{i}", 48000, 2, "s16le") for i in range(streams)]
    release_free_memory()
    before = held()
    windows = 0
    for _ in range(seconds * 10):
        for encoder in encoders:
            windows += len(ingest.accept(encoder.encode(frame)))  # the windows go, as a decided tick's do
    release_free_memory()
    used = held() - before
    census = sum(buffer.nbytes for buffer in ingest.buffers.values())
    print(f"buffers: {used / streams / 2**20:.3f} MiB per stream held ({census / streams / 2**20:.3f} MiB in the "
          f"census) after {windows} windows of {streams} streams")


if __name__ == "__main__":
    {"history": lambda: history(), "tick": lambda: tick(int(sys.argv[2])),
     "buffers": lambda: buffers(int(sys.argv[2]))}[sys.argv[1]]()
