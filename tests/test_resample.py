"""The block resampler is torchaudio's resampler, only faster: same kernel, same output."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from voicewatch.resample import BlockResample, make_resampler


@pytest.mark.parametrize("rate", [48000, 44100, 32000, 24000, 16000, 8000])
@pytest.mark.parametrize("length", [2.0, 1.04, 0.3337])
def test_it_gives_torchaudios_output_at_every_common_rate_and_length(rate: int, length: float) -> None:
    waves = torch.randn(3, round(length * rate), generator=torch.Generator().manual_seed(rate))
    expected = torchaudio.transforms.Resample(rate, 22050)(waves)
    got = BlockResample(rate, 22050)(waves)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5


def test_a_tone_below_the_new_nyquist_survives_and_one_above_is_removed() -> None:
    t = torch.arange(48000) / 48000
    resample = make_resampler(48000, 22050)
    kept = resample(torch.sin(2 * torch.pi * 1000 * t)[None])[0, 2000:-2000]
    removed = resample(torch.sin(2 * torch.pi * 16000 * t)[None])[0, 2000:-2000]
    assert kept.square().mean() == pytest.approx(0.5, rel=0.01) and removed.square().mean() < 1e-4
