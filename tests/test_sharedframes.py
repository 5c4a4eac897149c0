"""Overlapping windows share their log-MEL frames: each new window computes only its new second, and
gets the features it would get alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.ingest import Ingest
from voicewatch.sharedframes import SharedFrames
from voicewatch.sourceframes import FrameEncoder
from voicewatch.windows import StreamBreak, Window


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(device="cpu")


def stream_items(rate: int, seconds: float = 6.0, stream: str = "s", seed: int = 0) -> list:
    """A stream of speech-like noise cut into 100 ms frames and through the real ingest."""
    rng = np.random.default_rng(seed)
    wave = (rng.standard_normal(int(seconds * rate)) * np.repeat(rng.random(int(seconds * 10)), rate // 10)[: int(seconds * rate)]
            * 0.2).astype(np.float32)
    config = Config()
    ingest, encoder = Ingest(config.ingest, config.windows), FrameEncoder(stream, rate, 1, "f32le")
    step = rate // 10
    return [item for i in range(0, len(wave), step) for item in ingest.accept(encoder.encode(wave[i:i + step, None]))]


def whole(embedder: Embedder, windows: list[Window]) -> torch.Tensor:
    waves = torch.from_numpy(np.stack([w.samples for w in windows]))
    return embedder.features.log_mel(embedder.features.resample(waves, windows[0].rate))


@pytest.mark.parametrize("rate", [48000, 44100, 32000, 22050, 16000, 8000])
def test_a_window_after_its_predecessor_computes_only_its_new_frames_and_matches_the_whole(
        embedder: Embedder, rate: int) -> None:
    items = stream_items(rate)
    windows = [item for item in items if isinstance(item, Window)]
    frames = SharedFrames(embedder.features)
    one_per_tick = torch.cat([frames.features([window]) for window in windows])
    assert frames.shared == len(windows) - 1
    assert (one_per_tick - whole(embedder, windows)).abs().max() < 2e-3
    assert (SharedFrames(embedder.features).features(items) - one_per_tick).abs().max() < 2e-3  # a whole tick at once


def test_a_break_or_a_dropped_window_means_the_next_window_is_computed_whole(embedder: Embedder) -> None:
    windows = [item for item in stream_items(48000) if isinstance(item, Window)]
    frames = SharedFrames(embedder.features)
    frames.features([windows[0]])
    frames.features([StreamBreak("s", "seq_gap", 2.0, 2.0), windows[1]])
    assert frames.shared == 0
    frames.features([windows[3]])  # windows[2] was shed: [1, 3) and [3, 5) share no frame
    assert frames.shared == 0
    frames.features([windows[4]])
    assert frames.shared == 1
    assert (frames.features([windows[1]]) - whole(embedder, [windows[1]])).abs().max() < 2e-3  # back in time: whole


def test_streams_do_not_share_with_each_other(embedder: Embedder) -> None:
    a = [item for item in stream_items(16000, stream="a", seed=1) if isinstance(item, Window)]
    b = [item for item in stream_items(16000, stream="b", seed=2) if isinstance(item, Window)]
    frames = SharedFrames(embedder.features)
    interleaved = frames.features([w for pair in zip(a, b, strict=True) for w in pair])
    assert frames.shared == len(a) + len(b) - 2
    assert (interleaved[0::2] - whole(embedder, a)).abs().max() < 2e-3
    assert (interleaved[1::2] - whole(embedder, b)).abs().max() < 2e-3
