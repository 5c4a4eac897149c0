"""Clips of one person → checked, speech-only 2 s windows → exemplar embeddings for the bank.

Enrollment refuses what would poison a bank: unreadable files, clips with no speech, clips that are
mostly silence or music, and too little speech in total; it warns when a clip sounds like another person.
Clips are trimmed of leading/trailing silence, joined, and cut into windows the
same way the daemon cuts streams; windows that are mostly silence are not enrolled. Each window is
enrolled twice: as recorded, and degraded the way training windows are (noise or a music bed at
0–20 dB SNR, the telephone band), so that a person is matched under broadcast conditions as well as
in the clean clips; the degraded copies come from a fixed seed, so the same clips give the same bank.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio

from voicewatch.audiofile import read_audio, to_mono
from voicewatch.degrade import degrade
from voicewatch.embedder import Embedder
from voicewatch.windows import WindowBuffer

_LOG = logging.getLogger(__name__)
FRAME_S = 0.03
MIN_SPEECH_SHARE = 0.25
"""A clip with less speech than this share (30 ms frames within 35 dB of its loudest) is refused."""
MIN_LEVEL_SPREAD_DB = 3.0
"""A clip whose speech frames vary in level by less than this (standard deviation of their 30 ms levels, dB) is refused
as music or a steady sound: speech rises and falls with its syllables, sustained chords and plucked notes do not. A
single sustained vowel, or speech over a loud music bed, can fall below it too."""
SAME_PERSON_COSINE = 0.75
"""A clip whose mean embedding is less similar than this to the other clips' is probably someone else: it lies
between the scores of clips of the same voice and those of clips of other voices."""


class EnrollmentError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Clip:
    path: str
    samples: np.ndarray
    """Mono float32 at the model rate, leading/trailing silence trimmed."""
    speech_s: float
    speech_share: float = 1.0
    """Share of the untrimmed clip's 30 ms frames that are speech."""
    level_spread_db: float = 10.0
    """Standard deviation of the speech frames' levels (dB): low for music and steady sounds."""


def frame_power(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mean square of each whole 30 ms frame."""
    size = max(1, round(FRAME_S * rate))
    count = len(samples) // size
    return np.mean(samples[: count * size].reshape(count, size) ** 2, axis=1)


def speech_mask(samples: np.ndarray, rate: int) -> np.ndarray:
    """Per 30 ms frame: True where the level is within 35 dB of the clip's loudest frames and above -55 dBFS."""
    power = frame_power(samples, rate)
    if len(power) == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(power + 1e-12)
    reference = np.percentile(rms, 95)
    return (rms > reference * 10 ** (-35 / 20)) & (rms > 10 ** (-55 / 20))


def frame_levels_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Level of each 30 ms frame in dBFS."""
    return 10 * np.log10(frame_power(samples, rate) + 1e-12)


def load_clip(path: str | os.PathLike[str], rate: int) -> Clip:
    samples, source_rate = read_audio(path)  # raises AudioFileError with the reason
    mono = to_mono(samples)
    if source_rate != rate:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), source_rate, rate).numpy()
    mask = speech_mask(mono, rate)
    if not mask.any():
        raise EnrollmentError(f"{path}: no speech found (silent or nearly silent clip)")
    size = round(FRAME_S * rate)
    first, last = np.flatnonzero(mask)[[0, -1]]
    trimmed = mono[first * size : (last + 1) * size]
    spread = float(frame_levels_db(mono, rate)[mask].std())
    return Clip(str(path), np.ascontiguousarray(trimmed, dtype=np.float32), float(mask.sum() * FRAME_S),
                float(mask.mean()), spread)


def enrollment_windows(clips: Sequence[Clip], rate: int, length_s: float = 2.0, hop_s: float = 1.0) -> np.ndarray:
    """Join the clips and cut [N, length] windows with at least half their frames speech."""
    joined = np.concatenate([clip.samples for clip in clips])
    buffer = WindowBuffer("enroll", rate, length_s, hop_s, 0.0, None)
    windows = [w.samples for w in buffer.push(joined)]
    if not windows and len(joined):
        windows = [np.pad(joined, (0, buffer.length - len(joined)))]
    kept = [w for w in windows if speech_mask(w, rate).mean() >= 0.5]
    return np.stack(kept) if kept else np.zeros((0, buffer.length), dtype=np.float32)


MAX_ENROLLED_WINDOWS = 32
"""Windows one enrollment keeps, evenly spread over its clips. A speaker's score is the mean of its top 5
exemplar cosines, and a speaker with hundreds of exemplars finds five close to almost any voice: enrolled from
minutes of speech beside others enrolled from seconds, it would draw their windows."""


def exemplar_windows(windows: np.ndarray, rate: int) -> np.ndarray:
    """At most MAX_ENROLLED_WINDOWS of the windows, evenly spread, each followed by one degraded copy (fixed seed)."""
    if len(windows) > MAX_ENROLLED_WINDOWS:
        windows = windows[np.linspace(0, len(windows) - 1, MAX_ENROLLED_WINDOWS).round().astype(int)]
    return np.concatenate([windows, degrade(windows, rate, np.random.default_rng(0)).astype(np.float32)])


def embed_clips(embedder: Embedder, paths: Sequence[str | os.PathLike[str]], min_speech_s: float = 10.0) -> torch.Tensor:
    """Exemplar embeddings [N, D] for one speaker; raises EnrollmentError with a clear reason."""
    if not paths:
        raise EnrollmentError("no clips given")
    rate = embedder.settings.sample_rate
    clips = [load_clip(path, rate) for path in paths]
    for clip in clips:
        if clip.speech_share < MIN_SPEECH_SHARE:
            raise EnrollmentError(f"{clip.path}: mostly silence ({100 * clip.speech_share:.0f} % of it is speech, at "
                                  f"least {100 * MIN_SPEECH_SHARE:.0f} % is needed); cut it to where the person speaks")
        if clip.level_spread_db < MIN_LEVEL_SPREAD_DB:
            raise EnrollmentError(f"{clip.path}: sounds like music or a steady sound, not speech (its level varies by "
                                  f"{clip.level_spread_db:.1f} dB, speech by at least {MIN_LEVEL_SPREAD_DB:.0f} dB)")
    speech = sum(clip.speech_s for clip in clips)
    if speech < min_speech_s:
        raise EnrollmentError(
            f"only {speech:.1f} s of speech in {len(clips)} clip(s); at least {min_speech_s:.1f} s are needed "
            "(add clips or lower --min-speech)"
        )
    windows = enrollment_windows(clips, rate)
    if len(windows) == 0:
        raise EnrollmentError("no 2 s window of the clips is mostly speech")
    embeddings = embedder.embed(torch.from_numpy(exemplar_windows(windows, rate)), rate)
    for path, similarity in odd_clips(embedder, clips):
        _LOG.warning("%s sounds like someone else than the other clips (similarity %.2f < %.2f): check that every "
                     "clip is the same person", path, similarity, SAME_PERSON_COSINE)
    _LOG.info("enrolled %d windows from %d clips (%.1f s of speech)", len(windows), len(clips), speech)
    return embeddings


def odd_clips(embedder: Embedder, clips: Sequence[Clip]) -> list[tuple[str, float]]:
    """Clips whose mean embedding is unlike the mean of all the others (probably another person), with
    that similarity; needs three clips of at least one window each to say anything."""
    rate = embedder.settings.sample_rate
    centroids, paths = [], []
    for clip in clips:
        windows = enrollment_windows([clip], rate)
        if len(windows):
            centroids.append(torch.nn.functional.normalize(embedder.embed(torch.from_numpy(windows), rate).mean(0), dim=0))
            paths.append(clip.path)
    if len(centroids) < 3:
        return []
    stacked = torch.stack(centroids)
    odd = []
    for index in range(len(stacked)):
        others = torch.nn.functional.normalize(torch.cat([stacked[:index], stacked[index + 1:]]).mean(0), dim=0)
        similarity = float(stacked[index] @ others)
        if similarity < SAME_PERSON_COSINE:
            odd.append((paths[index], similarity))
    return odd
