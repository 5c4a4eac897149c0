"""`voicewatch calibrate`: give a model a score shift (scoreshift.py) fitted on the corpus' training voices, and fix
its threshold afresh on the validation windows the way `train` and `fuse` fix one.

The training split's recorded voices are enrolled and heard the way `voicewatch eval` enrolls and hears the
held-out ones, each heard window clean and under every broadcast condition of the eval (music bed and noise
at 10 dB SNR, the bed from the training split's recorded music; telephone band; MP2). From these trials:
for each condition, how much lower than on clean speech its scores balance misses and false alarms (the
offset), and a linear classifier that tells the conditions apart from a window's band statistics. The
validation voices only fix the threshold, as before. A fold model (`train --hold-out`) meets no voice of the
sources it held out here either.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from voicewatch.embedder import Embedder
from voicewatch.enrollment import enrollment_windows, exemplar_windows
from voicewatch.scoreshift import ScoreShift, band_statistics
from voicewatch.training.data import corpus_sources, held_out_sources, threshold_windows
from voicewatch.training.errorrates import eer_threshold
from voicewatch.training.streams import CONDITIONS, RATE, recorded_music, split_clips, training_voices
from voicewatch.training.train import (
    add_threshold_argument,
    check_corpus,
    check_false_alarm_rate,
    validation_threshold,
)
from voicewatch.training.trials import TEST_WINDOWS, degraded_tests, enrolled_bank

_LOG = logging.getLogger(__name__)
CLASSIFIER_STEPS = 600


@dataclasses.dataclass(frozen=True)
class ConditionTrials:
    """Heard training windows under one condition: their band statistics and their bank scores."""

    statistics: torch.Tensor
    """[N, 2 × n_mels]."""
    target: np.ndarray
    impostor: np.ndarray


def calibration_voices(corpus: Path, held_out: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    """The training split's recorded voices with three clips or more (one enrolls, two are heard), less the voices of
    the sources the model's training held out; at least two."""
    source_of = corpus_sources(corpus)
    voices = {name: files for name, files in training_voices(corpus).items()
              if len(files) >= 3 and source_of.get(name) not in held_out}
    if len(voices) < 2:
        less = f" once the voices of {','.join(held_out)} (held out by the model's training) are left out" if held_out else ""
        raise ValueError(f"{corpus}: fewer than two recorded training voices with three clips or more{less}")
    return voices


def condition_trials(embedder: Embedder, corpus: Path, voices: dict[str, list[Path]], seed: int) -> dict[str, ConditionTrials]:
    """Every condition's trials on these voices."""
    enroll_clips, heard = split_clips(voices, seed)
    music = recorded_music(corpus, "train")

    def features(windows: np.ndarray) -> torch.Tensor:
        return torch.cat([embedder.features(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)), RATE)
                          for chunk in np.array_split(windows, max(1, len(windows) // 128))])

    with torch.inference_mode():
        enroll = {name: exemplar_windows(enrollment_windows(clips, RATE), RATE) for name, clips in enroll_clips.items()}
        # the net's own forward, as `train` and `fuse` fix thresholds with it (not `serve`, equal to float
        # rounding): what calibrate writes depends on the nets alone
        bank = enrolled_bank(lambda windows: embedder.net(features(windows)), enroll)
        tests = {name: enrollment_windows(clips, RATE)[:TEST_WINDOWS] for name, clips in heard.items()}
        trials = {}
        for condition in CONDITIONS:
            statistics, scores, labels = [], [], []
            for column, windows in degraded_tests(bank.names, tests, condition, seed, music):
                feats = features(windows)
                statistics.append(band_statistics(feats))
                scores.append(bank.score(embedder.net(feats)))
                labels += [column] * len(windows)
            score = torch.cat(scores).numpy()
            is_target = np.zeros_like(score, dtype=bool)
            is_target[np.arange(len(score)), labels] = True
            trials[condition] = ConditionTrials(torch.cat(statistics), score[is_target], score[~is_target])
    return trials


def fit_shift(trials: dict[str, ConditionTrials], n_mels: int) -> tuple[ScoreShift, float]:
    """The score shift of these trials, and its classifier's accuracy on them (deterministic: the classifier starts
    from zeros and every step sees every window)."""
    conditions = tuple(trials)
    shift = ScoreShift(n_mels, conditions)
    balanced = {c: eer_threshold(t.target, t.impostor) for c, t in trials.items()}
    shift.offsets.copy_(torch.tensor([balanced[conditions[0]] - balanced[c] for c in conditions]))
    statistics = torch.cat([t.statistics for t in trials.values()])
    labels = torch.cat([torch.full((len(t.statistics),), i) for i, t in enumerate(trials.values())])
    shift.centre.copy_(statistics.mean(0))
    shift.spread.copy_(statistics.std(0).clamp_min(1e-6))
    scaled = (statistics - shift.centre) / shift.spread
    torch.nn.init.zeros_(shift.classify.weight)
    torch.nn.init.zeros_(shift.classify.bias)
    optimiser = torch.optim.Adam(shift.classify.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(CLASSIFIER_STEPS):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(shift.classify(scaled), labels)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        accuracy = float((shift.classify(scaled).argmax(1) == labels).float().mean())
    return shift.eval(), accuracy


def calibrate(model: Path, corpus: Path, seed: int, false_alarm: float, cache: Path | None) -> tuple[Embedder, dict]:
    check_false_alarm_rate(false_alarm)
    check_corpus(corpus)
    embedder = Embedder.load(model, device="cpu")
    embedder.shift = None  # a model calibrated before is calibrated afresh from its net
    held_out = held_out_sources(model)  # a fold model stays a fold model: nothing of its held-out sources fits it
    voices = calibration_voices(corpus, held_out)
    trials = condition_trials(embedder, corpus, voices, seed)
    shift, accuracy = fit_shift(trials, embedder.settings.n_mels)
    val = threshold_windows(corpus, embedder.settings, seed, cache, held_out)
    before = validation_threshold(embedder.net, val, false_alarm)
    threshold = validation_threshold(embedder.net, val, false_alarm, shift)
    calibrated = Embedder(embedder.net, embedder.settings, shift=shift)
    info = {**_info(model), "threshold": round(threshold, 4), "threshold_false_alarm": false_alarm,
            "score_shift": {"conditions": list(shift.conditions), "offsets": [round(float(o), 4) for o in shift.offsets],
                            "classifier_accuracy": round(accuracy, 4), "training_voices": len(voices), "seed": seed,
                            "unshifted_threshold": round(before, 4)}}
    return calibrated, info


def _info(model: Path) -> dict:
    import safetensors

    with safetensors.safe_open(str(model), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a model file made by `voicewatch train` or `voicewatch fuse`")
    parser.add_argument("--corpus", type=Path, required=True,
                        help="the corpus whose training voices fit the shift and whose validation voices fix the threshold")
    parser.add_argument("--out", type=Path, required=True, help="model file to write (safetensors)")
    parser.add_argument("--seed", type=int, default=1, help="split the training voices' clips, draw the conditions and "
                        "the validation windows (as `voicewatch train --seed` draws them) with this seed")
    add_threshold_argument(parser)
    parser.add_argument("--window-cache", type=Path, metavar="DIR", help="reuse prepared validation windows from here")


def run(args: argparse.Namespace) -> int:
    if not args.out.parent.is_dir():  # before a minute of work, not after it
        raise ValueError(f"--out {args.out}: folder {args.out.parent} does not exist")
    torch.set_num_threads(1)
    embedder, info = calibrate(args.model, args.corpus, args.seed, args.threshold_false_alarm, args.window_cache)
    embedder.save(args.out, extra=info)
    _LOG.info("score shift fitted into %s: offsets %s, threshold %.4f", args.out, info["score_shift"]["offsets"],
              info["threshold"])
    print(json.dumps(info))
    return 0
