"""The device scorer: log-MEL features in, the bank's scores out, the same in any batch size and on any device."""

from __future__ import annotations

import copy

import pytest
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.embedder import Architecture, Embedder
from voicewatch.scorer import DeviceScorer


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder.create(Architecture((32, 32), 3, 16))


@pytest.fixture(scope="module")
def features(embedder: Embedder) -> torch.Tensor:
    return embedder.features(torch.randn(10, 32000) * 0.1, 16000)


def bank_of(embedder: Embedder) -> SpeakerBank:
    bank = SpeakerBank(embedder.model_id, embedder.dim)
    generator = torch.Generator().manual_seed(1)
    for name in ("ann", "bob", "cy"):
        bank.enroll(name, torch.nn.functional.normalize(torch.randn(4, embedder.dim, generator=generator), dim=-1))
    return bank


def test_scores_are_the_banks_scores_of_the_nets_embeddings(embedder: Embedder, features: torch.Tensor) -> None:
    bank = bank_of(embedder)
    expected = bank.score(embedder.embed_features(features)).numpy()
    scores = DeviceScorer(embedder).score(features, bank)
    assert scores.shape == (10, 3)
    assert torch.allclose(torch.from_numpy(scores), torch.from_numpy(expected), atol=1e-6)


def test_batches_larger_than_the_limit_are_cut_and_give_the_same_scores(embedder: Embedder,
                                                                        features: torch.Tensor) -> None:
    bank = bank_of(embedder)
    whole = DeviceScorer(embedder, max_batch=2048).score(features, bank)
    cut = DeviceScorer(embedder, max_batch=3).score(features, bank)
    assert torch.allclose(torch.from_numpy(cut), torch.from_numpy(whole), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_features_through_the_pinned_buffer_score_as_on_the_cpu(embedder: Embedder,
                                                                     features: torch.Tensor) -> None:
    on_cpu = DeviceScorer(embedder).score(features, bank_of(embedder))
    on_cuda_embedder = Embedder(copy.deepcopy(embedder.net), embedder.settings, "cuda")
    scorer = DeviceScorer(on_cuda_embedder)
    for _ in range(2):  # the second batch reuses the pinned buffer
        on_cuda = scorer.score(features, bank_of(embedder))
        assert torch.allclose(torch.from_numpy(on_cuda), torch.from_numpy(on_cpu), atol=1e-4)
