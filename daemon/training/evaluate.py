"""Speaker-verification figures on 2 s window trials, scored the way the product scores (top-5 mean)."""

from __future__ import annotations

import numpy as np
import torch

from voicewatch.bank import SpeakerBank


def eer(target: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: where the false-rejection and false-acceptance rates cross."""
    scores = np.concatenate([target, impostor])
    is_target = np.concatenate([np.ones(len(target)), np.zeros(len(impostor))])
    order = np.argsort(-scores, kind="stable")
    is_target = is_target[order]
    false_accept = np.cumsum(1 - is_target) / max(len(impostor), 1)
    false_reject = 1 - np.cumsum(is_target) / max(len(target), 1)
    index = int(np.argmin(np.abs(false_accept - false_reject)))
    return float((false_accept[index] + false_reject[index]) / 2)


def min_dcf(target: np.ndarray, impostor: np.ndarray, p_target: float = 0.01) -> float:
    """Normalised minimum detection cost (C_miss = C_fa = 1)."""
    thresholds = np.sort(np.concatenate([target, impostor]))
    miss = np.searchsorted(np.sort(target), thresholds, side="left") / len(target)
    fa = 1 - np.searchsorted(np.sort(impostor), thresholds, side="left") / len(impostor)
    cost = p_target * miss + (1 - p_target) * fa
    return float(cost.min() / min(p_target, 1 - p_target))


def window_trials(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Enroll the first half of each speaker's windows, score the second half against every speaker."""
    bank = SpeakerBank("eval", embeddings.shape[1])
    tests, test_labels = [], []
    speakers = sorted(int(s) for s in labels.unique())
    for speaker in speakers:
        rows = torch.nonzero(labels == speaker).flatten()
        half = len(rows) // 2
        bank.enroll(f"s{speaker}", embeddings[rows[:half]])
        tests.append(embeddings[rows[half:]])
        test_labels += [speakers.index(speaker)] * (len(rows) - half)
    scores = bank.score(torch.cat(tests)).numpy()
    truth = np.zeros_like(scores, dtype=bool)
    truth[np.arange(len(scores)), test_labels] = True
    return scores[truth], scores[~truth]


@torch.no_grad()
def window_trials_eer(net: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    embeddings = torch.cat([net(chunk.float()) for chunk in features.split(512)])
    return eer(*window_trials(embeddings, labels))
