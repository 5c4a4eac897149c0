"""Window trials: 2 s windows of held-out voices, each voice enrolled the product's way, test windows degraded by
a broadcast condition and scored against every enrolled voice with the product's top-5 mean cosine; the same
trials by recording source, and under score normalisation against a cohort of training voices."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.embedder import Embedder
from voicewatch.enrollment import enrollment_windows, load_clip
from voicewatch.training.errorrates import eer, eer_threshold, error_rates, pooled, rates_at
from voicewatch.training.scorenorm import Cohort, as_norm, speaker_thresholds
from voicewatch.training.streams import RATE, apply_condition, cohort_voices

TEST_WINDOWS = 120
"""Test windows per voice and condition (the rest of a voice's windows are not needed)."""
COHORT_WINDOWS = 20
"""Cohort windows per training voice."""


def window_trials(embeddings: torch.Tensor, labels: torch.Tensor,
                  shifts: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Enroll the first half of each speaker's windows, score the second half against every speaker (each
    test window's score shift, if given, added to its scores)."""
    bank = SpeakerBank("eval", embeddings.shape[1])
    tests, test_shifts, test_labels = [], [], []
    speakers = sorted(int(s) for s in labels.unique())
    for speaker in speakers:
        rows = torch.nonzero(labels == speaker).flatten()
        half = len(rows) // 2
        bank.enroll(f"s{speaker}", embeddings[rows[:half]])
        tests.append(embeddings[rows[half:]])
        test_shifts.append(shifts[rows[half:]] if shifts is not None else torch.zeros(len(rows) - half))
        test_labels += [speakers.index(speaker)] * (len(rows) - half)
    scores = (bank.score(torch.cat(tests)) + torch.cat(test_shifts)[:, None]).numpy()
    truth = np.zeros_like(scores, dtype=bool)
    truth[np.arange(len(scores)), test_labels] = True
    return scores[truth], scores[~truth]


@torch.no_grad()
def net_window_trials(net: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor,
                      shift: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(target, impostor) top-5 scores of `window_trials` for a net's embeddings of these features (and a
    model's score shift of them)."""
    embeddings = torch.cat([net(chunk.float()) for chunk in features.split(512)])
    shifts = torch.cat([shift(chunk.float()) for chunk in features.split(512)]) if shift is not None else None
    return window_trials(embeddings, labels, shifts)


def window_trials_eer(net: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    return eer(*net_window_trials(net, features, labels))


@dataclasses.dataclass(frozen=True)
class ConditionScores:
    """Every degraded test window of one condition scored against every enrolled voice."""

    scores: np.ndarray
    """[N, S] top-5 mean cosines."""
    is_target: np.ndarray
    """[N, S] True where the window's voice is the column's voice."""
    tests: torch.Tensor
    """[N, D] embeddings of the test windows (for the test side of AS-norm)."""

    def trials(self, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(target, impostor) of these or of other (e.g. normalised) scores of the same trials."""
        scores = self.scores if scores is None else scores
        return scores[self.is_target], scores[~self.is_target]


def enrolled_bank(embed: Callable[[np.ndarray], torch.Tensor], enroll: dict[str, np.ndarray],
                  threshold: float = 0.7) -> SpeakerBank:
    """Every voice enrolled from its exemplar windows, in sorted name order (the score columns)."""
    embedded = {name: embed(enroll[name]) for name in sorted(enroll)}
    bank = SpeakerBank("eval", next(iter(embedded.values())).shape[1], default_threshold=threshold)
    for name, windows in embedded.items():
        bank.enroll(name, windows)
    return bank


def degraded_tests(names: list[str], tests: dict[str, np.ndarray], condition: str, seed: int,
                   music: list[np.ndarray] = ()) -> Iterator[tuple[int, np.ndarray]]:
    """(score column, [N, T] float32 windows): each voice's test windows in `names` order, degraded by `condition`."""
    rng = np.random.default_rng(seed)
    for column, name in enumerate(names):
        windows = tests[name] if condition == "clean" else np.stack([apply_condition(w, condition, rng, music)
                                                                    for w in tests[name]])
        yield column, windows.astype(np.float32)


def condition_scores(embed: Callable[[np.ndarray], torch.Tensor], bank: SpeakerBank, tests: dict[str, np.ndarray],
                     condition: str, seed: int, music: list[np.ndarray] = (),
                     shift: Callable[[np.ndarray], torch.Tensor] | None = None) -> ConditionScores:
    """Every test window, degraded by `condition`, scored against every voice of `bank` with one product (each
    window's score shift, when the model has one, added to its scores)."""
    rows, shifts, labels = [], [], []
    for column, windows in degraded_tests(bank.names, tests, condition, seed, music):
        rows.append(embed(windows))
        shifts.append(shift(windows) if shift is not None else torch.zeros(len(windows)))
        labels += [column] * len(windows)
    embedded = torch.cat(rows)
    scores = (bank.score(embedded) + torch.cat(shifts)[:, None]).numpy()
    is_target = np.zeros_like(scores, dtype=bool)
    is_target[np.arange(len(scores)), labels] = True
    return ConditionScores(scores, is_target, embedded)


def by_source(by_condition: dict[str, ConditionScores], sources: list[str], threshold: float) -> dict:
    """Pooled error rates of each source's voices with impostors of the same source (the same recording set-up, so
    the channel gives nothing away), and of every voice with impostors of other sources. `sources`: the source of
    each score column."""
    columns = np.array(sources)
    same, cross = {}, []
    for scored in by_condition.values():
        rows = columns[scored.is_target.argmax(axis=1)]
        for source in sorted(s for s in set(sources) if sources.count(s) > 1):  # impostors of its own
            mine = (rows == source)[:, None]
            target, impostor = same.setdefault(source, ([], []))
            target.append(scored.scores[scored.is_target & mine])
            impostor.append(scored.scores[~scored.is_target & mine & (columns == source)[None, :]])
        cross.append((scored.scores[scored.is_target], scored.scores[rows[:, None] != columns[None, :]]))
    report = {source: error_rates(np.concatenate(target), np.concatenate(impostor), threshold)
              for source, (target, impostor) in same.items()}
    return {**report, "cross_source": error_rates(*pooled(cross), threshold)}


def normalisation_report(bank: SpeakerBank, cohort: Cohort, by_condition: dict[str, ConditionScores],
                         quantile: float, top_k: int) -> dict:
    """Raw scores, per-speaker cohort thresholds and AS-norm on the same trials, per condition and pooled.

    "One threshold across conditions" is measured two ways: the pooled EER (one threshold for all
    conditions and voices, chosen after the fact) and the rates in each condition at the threshold
    that gives the clean condition's EER (chosen in advance on clean speech)."""
    thresholds = speaker_thresholds(bank, cohort, quantile)
    normalised = {c: as_norm(scored.scores, scored.tests, bank, cohort, top_k) for c, scored in by_condition.items()}
    report: dict = {"cohort": {"voices": len(cohort.bank), "windows": len(cohort.windows), "top_k": top_k,
                               "quantile": quantile},
                    "speaker_thresholds": {name: round(float(t), 4) for name, t in zip(bank.names, thresholds, strict=True)}}
    for method, scores_of in (("raw", {c: s.scores for c, s in by_condition.items()}), ("as_norm", normalised)):
        first = next(iter(by_condition))
        fixed = eer_threshold(*by_condition[first].trials(scores_of[first]))
        per_condition = {c: error_rates(*scored.trials(scores_of[c]), fixed) for c, scored in by_condition.items()}
        together = pooled(s.trials(scores_of[c]) for c, s in by_condition.items())
        per_condition["pooled"] = {**error_rates(*together, fixed), "threshold_from": first, "threshold": round(fixed, 4)}
        report[method] = per_condition
    speaker_rates = {c: rates_at(*scored.trials(scored.scores - thresholds), 0.0) for c, scored in by_condition.items()}
    speaker_rates["pooled"] = rates_at(*pooled(s.trials(s.scores - thresholds) for s in by_condition.values()), 0.0)
    report["per_speaker_thresholds"] = speaker_rates
    return report


def cohort_windows(corpus: Path) -> dict[str, np.ndarray]:
    """Up to COHORT_WINDOWS clean 2 s windows of each training voice."""
    windows = {name: enrollment_windows([load_clip(path, RATE) for path in files], RATE)[:COHORT_WINDOWS]
               for name, files in cohort_voices(corpus).items()}
    return {name: w for name, w in windows.items() if len(w)}


def embedder_function(embedder: Embedder, rate: int) -> Callable[[np.ndarray], torch.Tensor]:
    def embed(windows: np.ndarray) -> torch.Tensor:
        return torch.cat([embedder.embed(torch.from_numpy(chunk), rate) for chunk in np.array_split(
            windows, max(1, len(windows) // 128))]).cpu()
    return embed


def shift_function(embedder: Embedder, rate: int) -> Callable[[np.ndarray], torch.Tensor] | None:
    """[N, T] windows → their [N] score shifts, or None for a model without one."""
    if embedder.shift is None:
        return None

    def shift(windows: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([embedder.score_shift(embedder.features(torch.from_numpy(chunk), rate))
                              for chunk in np.array_split(windows, max(1, len(windows) // 128))]).cpu()
    return shift
