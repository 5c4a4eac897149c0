"""Error rates of verification trials (target and impostor scores): EER, minDCF, the rates at a threshold fixed in
advance, and DET curves."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path

import numpy as np


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
    thresholds = np.append(np.sort(np.concatenate([target, impostor])), np.inf)  # +inf: reject everything
    miss = np.searchsorted(np.sort(target), thresholds, side="left") / len(target)
    fa = 1 - np.searchsorted(np.sort(impostor), thresholds, side="left") / len(impostor)
    cost = p_target * miss + (1 - p_target) * fa
    return float(cost.min() / min(p_target, 1 - p_target))


def threshold_at_false_alarm(impostor: np.ndarray, rate: float) -> float:
    """The threshold that lets `rate` of these impostor scores through (scores ≥ it are detections)."""
    return float(np.quantile(impostor, 1.0 - rate))


def rates_at(target: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, float]:
    """Miss and false-alarm rates of windows at a fixed threshold."""
    return {"miss": round(float(np.mean(target < threshold)), 4), "false_alarm": round(float(np.mean(impostor >= threshold)), 4)}


def error_rates(target: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, float]:
    """EER, minDCF, the threshold at the EER and the rates at a threshold fixed in advance."""
    return {"eer": round(eer(target, impostor), 4), "min_dcf": round(min_dcf(target, impostor), 4),
            "eer_threshold": round(eer_threshold(target, impostor), 4), **rates_at(target, impostor, threshold)}


def eer_threshold(target: np.ndarray, impostor: np.ndarray) -> float:
    """The score at which the false-rejection and false-acceptance rates cross."""
    scores = np.sort(np.concatenate([target, impostor]))
    miss = np.searchsorted(np.sort(target), scores, side="left") / len(target)
    fa = 1 - np.searchsorted(np.sort(impostor), scores, side="left") / len(impostor)
    return float(scores[int(np.argmin(np.abs(miss - fa)))])


def pooled(trials: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(target, impostor) of several conditions as one set of trials."""
    targets, impostors = zip(*trials, strict=True)
    return np.concatenate(targets), np.concatenate(impostors)


def det_png(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Miss vs false-alarm probability on normal-deviate axes, one curve per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deviate = statistics.NormalDist().inv_cdf
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5]
    figure, axes = plt.subplots(figsize=(5, 5))
    for label, (target, impostor) in curves.items():
        thresholds = np.unique(np.concatenate([target, impostor]))
        miss = np.clip(np.searchsorted(np.sort(target), thresholds) / len(target), 1e-4, 1 - 1e-4)
        fa = np.clip(1 - np.searchsorted(np.sort(impostor), thresholds) / len(impostor), 1e-4, 1 - 1e-4)
        axes.plot([deviate(p) for p in fa], [deviate(p) for p in miss],
                  label=f"{label} (EER {100 * eer(target, impostor):.1f} %)")
    axes.set_xticks([deviate(p) for p in ticks], [f"{100 * p:g}" for p in ticks])
    axes.set_yticks([deviate(p) for p in ticks], [f"{100 * p:g}" for p in ticks])
    axes.set_xlim(deviate(0.0005), deviate(0.6))
    axes.set_ylim(deviate(0.0005), deviate(0.6))
    axes.set_xlabel("false alarm (%)")
    axes.set_ylabel("miss (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
