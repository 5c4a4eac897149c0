"""`voicewatch eval`: how well a model finds voices, measured the way the product works.

- Window trials: speaker-disjoint 2 s windows of the corpus' held-out voices, each voice enrolled
  the product's way from its own clips (their windows and a degraded copy of each), test windows
  degraded by each broadcast condition, scored with the product's top-5 mean cosine: EER, minDCF
  (p_target 0.01) and the miss/false-alarm rates at the threshold fixed in advance, per condition and
  pooled (one threshold for all conditions).
- Streams: broadcast-like validation streams with ground truth (streams.py) run through the real
  pipeline (`scan`) with a bank of the held-out voices: precision, recall and F1 of speaking time on
  a 10 ms grid, and false-alarm segments (touching no true turn) per hour.
- Score normalisation (scorenorm.py), on the same trials: per-speaker thresholds from a cohort of
  the corpus' training voices, and AS-norm against that cohort, raw and normalised side by side.
- Or your own annotated recordings: `--rttm TRUTH.rttm --bank BANK FILE…`.
Results as one JSON document; found segments as RTTM; DET curves as PNG.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config, load_config
from voicewatch.embedder import Embedder
from voicewatch.enrollment import enrollment_windows, exemplar_windows
from voicewatch.training.scorenorm import Cohort, as_norm, speaker_thresholds

if TYPE_CHECKING:
    from voicewatch.scan import Segment
    from voicewatch.training.streams import Stream

_LOG = logging.getLogger(__name__)


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


def threshold_at_false_alarm(impostor: np.ndarray, rate: float) -> float:
    """The threshold that lets `rate` of these impostor scores through (scores ≥ it are detections)."""
    return float(np.quantile(impostor, 1.0 - rate))


# ---------------------------------------------------------------- trials under broadcast conditions


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
    from voicewatch.training.streams import apply_condition

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


def normalisation_report(bank: SpeakerBank, cohort: Cohort, by_condition: dict[str, ConditionScores],
                         args: argparse.Namespace) -> dict:
    """Raw scores, per-speaker cohort thresholds and AS-norm on the same trials, per condition and pooled.

    "One threshold across conditions" is measured two ways: the pooled EER (one threshold for all
    conditions and voices, chosen after the fact) and the rates in each condition at the threshold
    that gives the clean condition's EER (chosen in advance on clean speech)."""
    thresholds = speaker_thresholds(bank, cohort, args.cohort_quantile)
    normalised = {c: as_norm(scored.scores, scored.tests, bank, cohort, args.as_norm_top_k) for c, scored in by_condition.items()}
    report: dict = {"cohort": {"voices": len(cohort.bank), "windows": len(cohort.windows), "top_k": args.as_norm_top_k,
                               "quantile": args.cohort_quantile},
                    "speaker_thresholds": {name: round(float(t), 4) for name, t in zip(bank.names, thresholds, strict=True)}}
    for method, scores_of in (("raw", {c: s.scores for c, s in by_condition.items()}), ("as_norm", normalised)):
        first = next(iter(by_condition))
        fixed = eer_threshold(*by_condition[first].trials(scores_of[first]))
        per_condition = {c: error_rates(*scored.trials(scores_of[c]), fixed) for c, scored in by_condition.items()}
        pooled = _pooled(s.trials(scores_of[c]) for c, s in by_condition.items())
        per_condition["pooled"] = {**error_rates(*pooled, fixed), "threshold_from": first, "threshold": round(fixed, 4)}
        report[method] = per_condition
    speaker_rates = {c: rates_at(*scored.trials(scored.scores - thresholds), 0.0) for c, scored in by_condition.items()}
    speaker_rates["pooled"] = rates_at(*_pooled(s.trials(s.scores - thresholds) for s in by_condition.values()), 0.0)
    report["per_speaker_thresholds"] = speaker_rates
    return report


def _pooled(trials: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(target, impostor) of several conditions as one set of trials."""
    targets, impostors = zip(*trials, strict=True)
    return np.concatenate(targets), np.concatenate(impostors)


def _cohort_windows(corpus: Path) -> dict[str, np.ndarray]:
    """Up to COHORT_WINDOWS clean 2 s windows of each training voice."""
    from voicewatch.enrollment import load_clip
    from voicewatch.training.streams import RATE, cohort_voices

    windows = {name: enrollment_windows([load_clip(path, RATE) for path in files], RATE)[:COHORT_WINDOWS]
               for name, files in cohort_voices(corpus).items()}
    return {name: w for name, w in windows.items() if len(w)}


COHORT_WINDOWS = 20
"""Cohort windows per training voice."""


# ---------------------------------------------------------------- segments against annotated streams

Span = tuple[float, float]
GRID_S = 0.01
"""Segments are scored on a 10 ms grid: precision/recall/F1 of speaking time."""


def _mask(spans: list[Span], frames: int) -> np.ndarray:
    mask = np.zeros(frames, dtype=bool)
    for start, end in spans:
        mask[max(0, round(start / GRID_S)):max(0, round(end / GRID_S))] = True
    return mask


def segment_counts(found: list[Span], truth: list[Span], seconds: float) -> dict[str, float]:
    """Time-based true/false positives and misses (s), and found segments that touch no true one."""
    frames = int(np.ceil(seconds / GRID_S))
    f, t = _mask(found, frames), _mask(truth, frames)
    false_alarms = sum(1 for start, end in found if not any(s < end and start < e for s, e in truth))
    return {"tp_s": (f & t).sum() * GRID_S, "fp_s": (f & ~t).sum() * GRID_S, "fn_s": (~f & t).sum() * GRID_S,
            "false_alarms": false_alarms, "seconds": seconds}


def segment_scores(counts: list[dict[str, float]]) -> dict[str, float]:
    """Precision, recall, F1 of speaking time and false-alarm segments per hour, summed over streams."""
    tp, fp, fn = (sum(c[k] for c in counts) for k in ("tp_s", "fp_s", "fn_s"))
    hours = sum(c["seconds"] for c in counts) / 3600
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "false_alarms_per_hour": round(sum(c["false_alarms"] for c in counts) / hours, 2) if hours else 0.0}


def read_rttm(path: str | os.PathLike[str]) -> dict[str, dict[str, list[Span]]]:
    """RTTM `SPEAKER file chan start duration <NA> <NA> name …` lines → {file: {speaker: [(start, end)]}}."""
    spans: dict[str, dict[str, list[Span]]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            spans.setdefault(fields[1], {}).setdefault(fields[7], []).append((start, start + duration))
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: not an RTTM SPEAKER line: {line!r}") from None
    return spans


def rttm_lines(stream: str, speaker: str, spans: list[Span]) -> list[str]:
    return [f"SPEAKER {stream} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>" for start, end in spans]


# ---------------------------------------------------------------- DET curves


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


# ---------------------------------------------------------------- the command

TEST_WINDOWS = 120
"""Test windows per voice and condition (the rest of a voice's windows are not needed)."""


def _embedder_function(embedder: Embedder, rate: int) -> Callable[[np.ndarray], torch.Tensor]:
    def embed(windows: np.ndarray) -> torch.Tensor:
        return torch.cat([embedder.embed(torch.from_numpy(chunk), rate) for chunk in np.array_split(
            windows, max(1, len(windows) // 128))]).cpu()
    return embed


def _shift_function(embedder: Embedder, rate: int) -> Callable[[np.ndarray], torch.Tensor] | None:
    """[N, T] windows → their [N] score shifts, or None for a model without one."""
    if embedder.shift is None:
        return None

    def shift(windows: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([embedder.score_shift(embedder.features(torch.from_numpy(chunk), rate))
                              for chunk in np.array_split(windows, max(1, len(windows) // 128))]).cpu()
    return shift


def evaluate_corpus(args: argparse.Namespace, embedder: Embedder) -> tuple[dict, dict, list[str]]:
    """(results, DET curves, RTTM lines of everything found) on the corpus' held-out voices."""
    from voicewatch.training.streams import RATE, build_streams, recorded_music, split_clips, validation_voices

    conditions = tuple(args.conditions.split(","))
    voices = validation_voices(args.corpus)
    if len(voices) < 2:
        raise ValueError(f"{args.corpus}: fewer than two held-out voices in manifest.json")
    embedders = {"model": _embedder_function(embedder, RATE)}
    shifts = {"model": _shift_function(embedder, RATE)}
    if args.peer:
        from voicewatch.tools.peer import load_peer

        peer = load_peer(args.peer)  # before any work: a missing peer is a quick, clear error
        embedders[peer.name] = lambda w: peer.embed(torch.from_numpy(w), RATE)
    enroll_clips, heard = split_clips(voices, args.seed)
    music = recorded_music(args.corpus, "val")
    enroll = {name: exemplar_windows(enrollment_windows(clips, RATE), RATE) for name, clips in enroll_clips.items()}
    tests = {name: enrollment_windows(clips, RATE)[:TEST_WINDOWS] for name, clips in heard.items()}
    cohort_embedded = _cohort_windows(args.corpus) if args.cohort else {}
    results: dict = {"voices": sorted(voices), "threshold": args.threshold, "trials": {}, "score_normalisation": {},
                     "streams": {}, "target_streams": {}, "peer_streams": {}}
    curves, impostors, banks = {}, {}, {}
    for who, embed in embedders.items():
        bank = banks[who] = enrolled_bank(embed, enroll, args.threshold)
        by_condition = {}
        for condition in conditions:
            started = time.perf_counter()
            by_condition[condition] = condition_scores(embed, bank, tests, condition, args.seed, music, shifts.get(who))
            _LOG.info("%s %s trials scored in %.1f s", who, condition, time.perf_counter() - started)
        per_condition = {condition: {**error_rates(*scored.trials(), args.threshold),
                                     "trials": [int(scored.is_target.sum()), int((~scored.is_target).sum())]}
                         for condition, scored in by_condition.items()}
        target, impostors[who] = _pooled(scored.trials() for scored in by_condition.values())
        per_condition["pooled"] = error_rates(target, impostors[who], args.threshold)
        results["trials"][who] = per_condition
        if who == "model":
            curves = {condition: scored.trials() for condition, scored in by_condition.items()}
        if cohort_embedded:
            cohort = Cohort.from_voices({name: embed(windows) for name, windows in cohort_embedded.items()})
            results["score_normalisation"][who] = normalisation_report(bank, cohort, by_condition, args)
        _LOG.info("%s trials: %s", who, json.dumps(per_condition["pooled"]))
    streams, config = build_streams(heard, args.seed, conditions, music=music), _config(args)
    bank = banks.pop("model")
    with tempfile.TemporaryDirectory(prefix="voicewatch-eval-") as folder:
        results["streams"], found = evaluate_streams(streams, bank, _scan_finder(embedder, bank, config, Path(folder)))
        results["target_streams"] = evaluate_target_streams(
            streams, bank, lambda alone: _scan_finder(embedder, alone, config, Path(folder)))
    model_false_alarm = results["trials"]["model"]["pooled"]["false_alarm"]
    for who, peer_bank in banks.items():
        peer_bank.default_threshold = threshold = threshold_at_false_alarm(impostors[who], model_false_alarm)
        scores, _ = evaluate_streams(streams, peer_bank, _window_finder(embedders[who], peer_bank, config))
        alone = evaluate_target_streams(streams, peer_bank, lambda b, embed=embedders[who]: _window_finder(embed, b, config))
        results["peer_streams"][who] = {"threshold": round(threshold, 4), "pooled_false_alarm": model_false_alarm,
                                        **scores, "target_alone": alone}
    return results, curves, found


Finder = Callable[["Stream"], list["Segment"]]
"""A validation stream → the segments found in it."""


def evaluate_streams(streams: list[Stream], bank: SpeakerBank, find: Finder) -> tuple[dict, list[str]]:
    """Every stream through `find` with a bank of all held-out voices; scores per condition and overall."""
    counts: dict[str, list[dict[str, float]]] = {}
    found_lines: list[str] = []
    for stream in streams:
        found = find(stream)
        for speaker in bank.names:
            spans = [(s.start, s.end) for s in found if s.speaker == speaker]
            truth = [(t.start, t.end) for t in stream.turns if t.speaker == speaker]
            counts.setdefault(stream.condition, []).append(segment_counts(spans, truth, stream.seconds))
            found_lines += rttm_lines(stream.name, speaker, spans)
    results = {condition: segment_scores(c) for condition, c in counts.items()}
    results["all"] = segment_scores([c for per in counts.values() for c in per])
    results["hours"] = round(sum(s.seconds for s in streams) / 3600, 3)
    _LOG.info("streams: %s", json.dumps(results["all"]))
    return results, found_lines


def evaluate_target_streams(streams: list[Stream], bank: SpeakerBank, finder: Callable[[SpeakerBank], Finder]) -> dict:
    """Every stream with a bank of its target voice alone (one person sought, every other voice unknown):
    speaking-time scores of the target, per condition and overall."""
    counts: dict[str, list[dict[str, float]]] = {}
    for stream in streams:
        alone = bank.copy()
        for other in [name for name in bank.names if name != stream.target]:
            alone.remove(other)
        spans = [(s.start, s.end) for s in finder(alone)(stream) if s.speaker == stream.target]
        counts.setdefault(stream.condition, []).append(segment_counts(spans, stream.truth, stream.seconds))
    results = {condition: segment_scores(c) for condition, c in counts.items()}
    results["all"] = segment_scores([c for per in counts.values() for c in per])
    _LOG.info("streams, target alone in the bank: %s", json.dumps(results["all"]))
    return results


def _scan_finder(embedder: Embedder, bank: SpeakerBank, config: Config, folder: Path) -> Finder:
    """The product itself: the stream written as a WAV file and run through `scan`."""
    from voicewatch.scan import scan, segments
    from voicewatch.training.streams import RATE

    def find(stream: Stream) -> list[Segment]:
        path = folder / f"{stream.name}.wav"
        soundfile.write(str(path), stream.audio, RATE, subtype="FLOAT")
        return segments(scan([path], [stream.name.replace(".", "_")], embedder, bank, config))
    return find


def _window_finder(embed: Callable[[np.ndarray], torch.Tensor], bank: SpeakerBank, config: Config) -> Finder:
    """For an encoder that is not a voicewatch model (a peer): the stream cut into the configured windows,
    embedded by `embed`, and walked by the product's detector with the product's window decisions."""
    from voicewatch.detector import Detector, positive_windows
    from voicewatch.scan import segments
    from voicewatch.training.streams import RATE
    from voicewatch.windows import Window

    def find(stream: Stream) -> list[Segment]:
        length, hop = round(config.windows.length_s * RATE), round(config.windows.hop_s * RATE)
        starts = range(0, len(stream.audio) - length + 1, hop)
        windows = np.stack([stream.audio[start:start + length] for start in starts])
        levels = 10 * np.log10(np.mean(np.square(windows), axis=1) + 1e-12)
        scores = bank.score(embed(windows)).numpy()
        positive = positive_windows(scores, bank.thresholds().numpy(), levels, config.detector)
        detector, events, name = Detector(config.detector, config.windows.hop_s), [], stream.name.replace(".", "_")
        for row, start in enumerate(starts):
            window = Window(name, RATE, start / RATE, (start + length) / RATE, None, windows[row])
            events += detector.observe(window, bank.names, scores[row], positive[row])
        return segments(events + detector.close_all())
    return find


def evaluate_annotated(args: argparse.Namespace, embedder: Embedder) -> tuple[dict, list[str]]:
    """Your recordings against your RTTM: each file's stem is its RTTM file id."""
    from voicewatch.audiofile import read_audio
    from voicewatch.scan import scan, segments

    truth = read_rttm(args.rttm)
    bank = SpeakerBank.load(args.bank)
    counts, lines = [], []
    for path in args.files:
        stem = Path(path).stem
        if stem not in truth:
            raise ValueError(f"{path}: no file id {stem!r} in {args.rttm} (ids: {', '.join(sorted(truth))})")
        samples, rate = read_audio(path)
        found = segments(scan([path], [_stream_id(stem)], embedder, bank, _config(args)))
        for speaker in bank.names:
            spans = [(s.start, s.end) for s in found if s.speaker == speaker]
            counts.append(segment_counts(spans, truth[stem].get(speaker, []), len(samples) / rate))
            lines += rttm_lines(stem, speaker, spans)
    return {"files": len(args.files), "speakers": bank.names, "streams": {"all": segment_scores(counts)}}, lines


def _config(args: argparse.Namespace) -> Config:
    """Windows and detector settings: the deployment's config file, else the defaults."""
    return load_config(args.config)


def _stream_id(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in stem)[:64] or "file"


def parse_seeds(text: str) -> tuple[int, ...]:
    """'11' or '11,12,13' → the eval splits, each once."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, not {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, not {text!r}")
    return seeds


def mean_over_splits(splits: list[dict]) -> dict:
    """The headline figures of several splits' results: each one's mean and its value per split."""
    figures: dict[str, list[float]] = {}
    for result in splits:
        for who, per_condition in result["trials"].items():
            figures.setdefault(f"{who} pooled EER", []).append(per_condition["pooled"]["eer"])
            figures.setdefault(f"{who} pooled minDCF", []).append(per_condition["pooled"]["min_dcf"])
        figures.setdefault("model streams F1", []).append(result["streams"]["all"]["f1"])
        figures.setdefault("model target streams F1", []).append(result["target_streams"]["all"]["f1"])
        for who, streams in result["peer_streams"].items():
            figures.setdefault(f"{who} streams F1", []).append(streams["all"]["f1"])
            figures.setdefault(f"{who} target streams F1", []).append(streams["target_alone"]["all"]["f1"])
    return {name: {"mean": round(float(np.mean(values)), 4), "per_split": values} for name, values in figures.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="recordings to score against --rttm")
    parser.add_argument("--corpus", type=Path, help="corpus folder (python -m voicewatch.training.voices): "
                                                    "window trials and validation streams of its held-out voices")
    parser.add_argument("--rttm", type=Path, help="ground truth of FILEs (RTTM; file id = file name stem)")
    parser.add_argument("--bank", type=Path, help="speaker bank to find in FILEs (with --rttm)")
    parser.add_argument("--model", help="embedder checkpoint (default: the shipped model)")
    parser.add_argument("-c", "--config", help="YAML config whose windows and detector settings the streams use")
    parser.add_argument("--threshold", type=float,
                        help="detection threshold fixed in advance (default: the one the model carries, else 0.7)")
    parser.add_argument("--conditions", default="clean,music,noise,phone,mp2",
                        help="broadcast conditions of trials and streams (default: all)")
    parser.add_argument("--peer", choices=("resemblyzer",), help="also score the trials with this peer model")
    parser.add_argument("--no-cohort", dest="cohort", action="store_false",
                        help="skip per-speaker thresholds and AS-norm against the corpus' training voices")
    parser.add_argument("--cohort-quantile", type=float, default=0.99,
                        help="per-speaker threshold: this quantile of the voice's cohort impostor scores (default 0.99)")
    parser.add_argument("--as-norm-top-k", type=int, default=50, help="AS-norm: top-K cohort scores per side (default 50)")
    parser.add_argument("--seed", type=parse_seeds, default=(11,), metavar="SEED[,SEED…]",
                        help="split(s) of the held-out voices (default 11); with several, every split is evaluated "
                             "and the JSON holds each one under `splits` and their means under `mean`")
    parser.add_argument("--out", type=Path, help="write the JSON results here too")
    parser.add_argument("--det", type=Path, help="DET curves per condition as PNG (needs matplotlib)")
    parser.add_argument("--rttm-out", type=Path, help="everything found, as RTTM")


def run(args: argparse.Namespace) -> int:
    if (args.corpus is None) == (args.rttm is None):
        raise ValueError("give --corpus DIR, or --rttm TRUTH --bank BANK FILE…")
    if args.rttm is not None and (args.bank is None or not args.files):
        raise ValueError("--rttm needs --bank and at least one FILE")
    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be a cosine score from -1 to 1, not {args.threshold}")
    if not 0.0 <= args.cohort_quantile <= 1.0:
        raise ValueError(f"--cohort-quantile must be from 0 to 1, not {args.cohort_quantile}")
    if args.as_norm_top_k < 1:
        raise ValueError(f"--as-norm-top-k must be 1 or more, not {args.as_norm_top_k}")
    if len(args.seed) > 1 and (args.corpus is None or args.det is not None or args.rttm_out is not None):
        raise ValueError("several --seed values need --corpus, and go without --det and --rttm-out")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    embedder = Embedder.load(args.model, device="cpu")
    if args.threshold is None:
        args.threshold = embedder.threshold
    curves: dict = {}
    if args.corpus is not None and len(args.seed) > 1:
        splits = {seed: evaluate_corpus(argparse.Namespace(**{**vars(args), "seed": seed}), embedder)[0]
                  for seed in args.seed}
        results, lines = {"mean": mean_over_splits(list(splits.values())), "splits": splits}, []
    elif args.corpus is not None:
        args.seed = args.seed[0]
        results, curves, lines = evaluate_corpus(args, embedder)
    else:
        results, lines = evaluate_annotated(args, embedder)
    results["model"] = {"id": embedder.model_id, "path": args.model or "shipped"}
    if args.det is not None and curves:
        det_png(args.det, curves)
    if args.rttm_out is not None:
        args.rttm_out.write_text("".join(line + "\n" for line in lines))
    text = json.dumps(results)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0
