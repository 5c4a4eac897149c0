"""A reviewed clip → a change to its speaker in the bank.

A clip's windows are cut on the grid the core cut the stream on (the clip records it), so they are
the very windows that were scored. Confirmed: those that pass enrollment's quality gates become
exemplars of the speaker (bounded; the least typical leave first). Rejected: all of the segment's
windows join the speaker's impostor cohort, and its threshold is recomputed from the cohort.
Either way, a speaker with a cohort gets its threshold recomputed, since its scores moved.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.clipstore import ClipInfo
from voicewatch.config import ReviewConfig
from voicewatch.embedder import Embedder
from voicewatch.enrollment import MIN_LEVEL_SPREAD_DB, MIN_SPEECH_SHARE, frame_levels_db, speech_mask

VERDICTS = ("confirm", "reject")


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What a review did to its speaker."""

    windows: int
    """Segment windows in the clip."""
    added: int
    """Exemplars added (confirm) or cohort windows added (reject)."""
    evicted: int
    """Exemplars that left to keep the speaker within `review.max_exemplars`."""
    threshold: float
    """The speaker's threshold afterwards."""
    note: str = ""
    """Why fewer windows were added than the clip has, when that is so."""


def segment_windows(info: ClipInfo, samples: np.ndarray) -> np.ndarray:
    """[N, window] float32: the windows of the segment, cut from the clip on the stream's own window grid."""
    length, hop = round(info.window_s * info.rate), round(info.hop_s * info.rate)
    edge = (info.window_s - info.hop_s) / 2
    first = round((info.first_window - info.start) * info.rate)
    last_start = round((info.segment_end + edge - info.window_s - info.start) * info.rate)
    starts = [s for s in range(first, last_start + 1, hop) if s >= 0 and s + length <= len(samples)]
    audio = samples.astype(np.float32) / 32768
    return np.stack([audio[s:s + length] for s in starts]) if starts else np.zeros((0, length), np.float32)


def embed_windows(embedder: Embedder, windows: np.ndarray, rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [N, D] and score shifts [N] of windows, as the pipeline computes them."""
    with torch.inference_mode():
        features = embedder.features(torch.from_numpy(windows), rate)
        return embedder.embed_features(features).cpu(), embedder.score_shift(features).cpu()


def speech_gate(info: ClipInfo, samples: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, str]:
    """Which windows enrollment would keep ([N] bool), and why none are, when none are."""
    segment = samples[max(0, round((info.segment_start - info.start) * info.rate)):
                      round((info.segment_end - info.start) * info.rate)].astype(np.float32) / 32768
    mask = speech_mask(segment, info.rate)
    if not mask.any() or mask.mean() < MIN_SPEECH_SHARE:
        return np.zeros(len(windows), bool), "the segment is mostly silence"
    if frame_levels_db(segment, info.rate)[mask].std() < MIN_LEVEL_SPREAD_DB:
        return np.zeros(len(windows), bool), "the segment sounds like music or a steady sound, not speech"
    keep = np.array([speech_mask(w, info.rate).mean() >= 0.5 for w in windows], dtype=bool)
    return keep, "" if keep.all() else f"{int((~keep).sum())} windows are mostly not speech"


def apply_feedback(bank: SpeakerBank, embedder: Embedder, info: ClipInfo, samples: np.ndarray, verdict: str,
                   limits: ReviewConfig) -> Feedback:
    """Change `bank` (a copy the caller saves and swaps in) by one review of a clip of `info.speaker`."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    name = info.speaker
    bank.exemplars(name)  # raises UnknownSpeakerError when the speaker left the bank
    windows = segment_windows(info, samples)
    if len(windows) == 0:
        raise ValueError(f"clip {info.id} holds no whole window of its segment")
    embeddings, shifts = embed_windows(embedder, windows, info.rate)
    evicted, note = 0, ""
    if verdict == "confirm":
        keep, note = speech_gate(info, samples, windows)
        added = int(keep.sum())
        if added:
            bank.enroll(name, embeddings[torch.from_numpy(keep)])
            evicted = bank.keep_most_typical(name, limits.max_exemplars)
    else:
        bank.add_to_cohort(name, embeddings, shifts, limits.max_cohort)
        added = len(windows)
    threshold = bank.recompute_threshold(name)
    return Feedback(len(windows), added, evicted, threshold, note)
