"""The embedding history: a fixed ring per stream that keeps the last `history_s` of windows, enough for
an enrollment from a stream's time range to score as the float32 embeddings would."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.history import EmbeddingHistory
from voicewatch.pipeline import Pipeline
from voicewatch.shipped import DEMO_BANK
from voicewatch.windows import Window

DIM = 640


def windows(stream: str, first: int, count: int) -> list[Window]:
    silence = np.zeros(4, dtype=np.float32)
    return [Window(stream, 16000, float(k), float(k + 2), None, silence) for k in range(first, first + count)]


def embeddings(count: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(count, DIM, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_a_stream_costs_its_whole_ring_from_its_first_window_and_no_more_after_hours() -> None:
    history = EmbeddingHistory(seconds=300, hop_s=1.0, streams=8)
    history.record(windows("a", 0, 1), embeddings(1))
    first = history.held_bytes()
    assert first == 300 * (2 * DIM + 16)
    for hour_second in range(1, 3600, 100):
        history.record(windows("a", hour_second, 100), embeddings(100, seed=hour_second))
    assert history.held_bytes() == first


def test_between_gives_the_windows_wholly_inside_the_range_oldest_first_after_the_ring_wrapped() -> None:
    history = EmbeddingHistory(seconds=10, hop_s=1.0, streams=8)
    vectors = embeddings(25)
    history.record(windows("a", 0, 25), vectors)  # only windows 15..24 are kept
    got, seconds = history.between("a", 12.0, 21.0)
    assert torch.allclose(got, vectors[15:20], atol=1e-3)  # windows [15, 17] .. [19, 21]
    assert seconds == 21.0 - 15.0
    assert history.between("a", 0.0, 14.0)[1] == 0.0  # forgotten
    assert history.between("b", 0.0, 100.0)[1] == 0.0  # never heard


def test_embeddings_kept_as_float16_score_against_a_bank_as_the_float32_ones_do() -> None:
    history = EmbeddingHistory(seconds=300, hop_s=1.0, streams=8)
    vectors = embeddings(200, seed=3)
    history.record(windows("a", 0, 200), vectors)
    kept, _ = history.between("a", 0.0, 1000.0)
    exemplars = embeddings(50, seed=4)
    assert kept.dtype == torch.float32
    assert (kept @ exemplars.T - vectors @ exemplars.T).abs().max().item() < 2e-3
    assert F.cosine_similarity(kept, vectors).min().item() > 0.99999


def test_the_least_recently_heard_stream_is_forgotten_beyond_the_stream_limit() -> None:
    history = EmbeddingHistory(seconds=10, hop_s=1.0, streams=2)
    for stream in ("a", "b", "a", "c"):
        history.record(windows(stream, 0, 1), embeddings(1))
    assert history.between("b", 0.0, 10.0)[1] == 0.0
    assert history.between("a", 0.0, 10.0)[1] == 2.0 and history.between("c", 0.0, 10.0)[1] == 2.0
    assert history.held_bytes() == 2 * 10 * (2 * DIM + 16)


def test_a_model_of_another_size_starts_the_stream_afresh_and_clear_forgets_everything() -> None:
    history = EmbeddingHistory(seconds=10, hop_s=1.0, streams=2)
    history.record(windows("a", 0, 3), embeddings(3))
    history.record(windows("a", 3, 1), F.normalize(torch.ones(1, 64), dim=-1))
    got, seconds = history.between("a", 0.0, 10.0)
    assert got.shape == (1, 64) and seconds == 2.0
    history.clear()
    assert history.held_bytes() == 0


def test_a_new_model_forgets_the_history_the_old_one_made() -> None:
    embedder, config = Embedder.load(), Config()
    pipeline = Pipeline(embedder, SpeakerBank.load(DEMO_BANK, embedder_id=embedder.model_id), config.detector,
                        config.windows.hop_s)
    pipeline.history = EmbeddingHistory(seconds=10, hop_s=1.0, streams=2)
    pipeline.history.record(windows("a", 0, 3), embeddings(3))
    pipeline.embedder = Embedder.load()  # what a reload does
    assert pipeline.history.held_bytes() == 0
