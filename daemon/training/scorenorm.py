"""Scores against a cohort of non-target voices: per-speaker thresholds and AS-norm.

A raw top-5 score means different things for different voices (a voice close to many others draws
high impostor scores) and under different conditions (noise pulls every score toward the middle).
Two remedies, both measured by `voicewatch eval` before anything goes into the product:

- Per-speaker thresholds: each enrolled voice's threshold is a high quantile of its scores against
  the cohort's windows (impostors by construction), so every voice gets the same impostor rate.
- AS-norm (adaptive symmetric score normalisation): a trial's raw score is standardised twice, by
  the mean and deviation of the enrolled voice's top-K cohort scores and by those of the test
  window's top-K cohort scores, and the two are averaged. Both use the product's scoring: the
  cohort voices are enrolled in a bank of their own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from voicewatch.bank import SpeakerBank


@dataclasses.dataclass(frozen=True)
class Cohort:
    """Embedded 2 s windows of voices that are never enrolled nor tested."""

    windows: torch.Tensor
    """[C, D] unit vectors of every cohort window."""
    bank: SpeakerBank
    """The cohort voices enrolled from those windows (for the test side of AS-norm)."""

    @classmethod
    def from_voices(cls, embedded: dict[str, torch.Tensor]) -> Cohort:
        bank = SpeakerBank("cohort", next(iter(embedded.values())).shape[1])
        for name, windows in sorted(embedded.items()):
            bank.enroll(name, windows)
        return cls(torch.cat([embedded[name] for name in sorted(embedded)]), bank)


def speaker_thresholds(bank: SpeakerBank, cohort: Cohort, quantile: float) -> np.ndarray:
    """[S] per enrolled voice: the `quantile` of its top-5 scores against every cohort window."""
    return np.quantile(bank.score(cohort.windows).numpy(), quantile, axis=0)


def as_norm(scores: np.ndarray, tests: torch.Tensor, bank: SpeakerBank, cohort: Cohort, top_k: int) -> np.ndarray:
    """AS-norm of raw scores [N, S] of test windows `tests` [N, D] against `bank`'s S voices."""
    enrolled_side = np.sort(bank.score(cohort.windows).numpy(), axis=0)[-top_k:]  # [K, S] highest per voice
    test_side = np.sort(cohort.bank.score(tests).numpy(), axis=1)[:, -top_k:]  # [N, K] highest per window
    z_enrolled = (scores - enrolled_side.mean(axis=0)) / (enrolled_side.std(axis=0) + 1e-6)
    z_test = (scores - test_side.mean(axis=1, keepdims=True)) / (test_side.std(axis=1, keepdims=True) + 1e-6)
    return (z_enrolled + z_test) / 2
