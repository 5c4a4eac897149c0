"""A window's score shift for the condition it sounds like: one threshold across clean, music-bed, noisy,
phone and coded audio.

Degraded audio lowers a true speaker's score more than it lowers an impostor's high scores: under a
music bed the scores at which misses and false alarms balance sit lower than on clean speech, so one
threshold misses music-bed turns while clean impostors already pass. A model may carry a small
classifier over each window's log-MEL band statistics (each band's mean and spread over the frames)
that tells how likely each condition is, and for each condition the amount by which its scores sit
lower than clean ones. The window's scores are raised by the expected amount. `voicewatch calibrate`
fits both on the training voices (never on the held-out ones) and writes them into the model file.
"""

from __future__ import annotations

import torch
from torch import nn


def band_statistics(features: torch.Tensor) -> torch.Tensor:
    """[B, n_mels, frames] → [B, 2 × n_mels]: each band's mean and standard deviation (n − 1) over the frames.

    From the mean square less the squared mean: much cheaper on the CPU than `Tensor.std`, and close to it for
    log-MEL values. Calibration and scoring both use this, so the shift sees the same numbers."""
    frames = features.shape[-1]
    mean = features.mean(dim=-1)
    variance = (features.square().mean(dim=-1) - mean.square()) * (frames / (frames - 1))
    return torch.cat([mean, variance.clamp_min(0.0).sqrt()], dim=1)


class ScoreShift(nn.Module):
    """Band statistics → softmax over `conditions` → the expected offset (added to every score of the window)."""

    def __init__(self, n_mels: int, conditions: tuple[str, ...]) -> None:
        super().__init__()
        if len(conditions) < 2 or len(set(conditions)) != len(conditions):
            raise ValueError(f"a score shift needs two or more distinct conditions, not {list(conditions)}")
        self.conditions = tuple(conditions)
        self.register_buffer("centre", torch.zeros(2 * n_mels))
        self.register_buffer("spread", torch.ones(2 * n_mels))
        self.classify = nn.Linear(2 * n_mels, len(conditions))
        self.register_buffer("offsets", torch.zeros(len(conditions)))

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B, conditions]."""
        return torch.softmax(self.classify((band_statistics(features) - self.centre) / self.spread), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B] amount to add to each of the window's scores."""
        return self.probabilities(features) @ self.offsets
