"""Found segments against ground truth: speaking time scored on a 10 ms grid, false-alarm segments per hour, RTTM
in and out; streams walked by the product (`scan`) or, for a peer's encoder, by the product's own detector."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.detector import Detector, positive_windows
from voicewatch.embedder import Embedder
from voicewatch.scan import Segment, scan, segments
from voicewatch.training.streams import RATE, Stream
from voicewatch.windows import Window

_LOG = logging.getLogger(__name__)
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


Finder = Callable[[Stream], list[Segment]]
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


def scan_finder(embedder: Embedder, bank: SpeakerBank, config: Config, folder: Path) -> Finder:
    """The product itself: the stream written as a WAV file and run through `scan`."""
    def find(stream: Stream) -> list[Segment]:
        path = folder / f"{stream.name}.wav"
        soundfile.write(str(path), stream.audio, RATE, subtype="FLOAT")
        return segments(scan([path], [stream.name.replace(".", "_")], embedder, bank, config))
    return find


def window_finder(embed: Callable[[np.ndarray], torch.Tensor], bank: SpeakerBank, config: Config) -> Finder:
    """For an encoder that is not a voicewatch model (a peer): the stream cut into the configured windows,
    embedded by `embed`, and walked by the product's detector with the product's window decisions."""
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
