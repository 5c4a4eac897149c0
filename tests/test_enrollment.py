"""Enrollment gates on real audio made in the test: espeak-ng speech, synthetic chords, silence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voicewatch.embedder import Embedder
from voicewatch.enrollment import (
    MAX_ENROLLED_WINDOWS,
    MIN_LEVEL_SPREAD_DB,
    EnrollmentError,
    embed_clips,
    enrollment_windows,
    exemplar_windows,
    load_clip,
)

RATE = 22050
SENTENCES = [
    "The weather tomorrow will be cloudy with some rain in the north and sunshine later in the afternoon.",
    "Parliament met this morning to discuss the budget, and the minister answered questions for an hour.",
]

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def speech_clip(folder: Path, index: int) -> Path:
    path = folder / f"speech-{index}.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), SENTENCES[index % len(SENTENCES)]], check=True)
    return path


def chords_clip(folder: Path, seconds: float = 12.0) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    music = np.zeros_like(t)
    for index, root in enumerate([220.0, 196.0, 247.0, 262.0, 220.0, 196.0]):
        part = (t >= 2 * index) & (t < 2 * index + 2)
        for ratio in (1.0, 1.26, 1.5):
            music[part] += np.sin(2 * np.pi * root * ratio * t[part])
    path = folder / "chords.wav"
    sf.write(path, (0.2 * music).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(device="cpu")


def test_speech_clips_are_enrolled(tmp_path: Path, embedder: Embedder) -> None:
    paths = [speech_clip(tmp_path, index) for index in range(2)]
    assert all(load_clip(path, RATE).level_spread_db > MIN_LEVEL_SPREAD_DB for path in paths)
    embeddings = embed_clips(embedder, paths, min_speech_s=8.0)
    assert embeddings.shape[0] >= 4 and embeddings.shape[1] == embedder.dim


def test_each_window_is_enrolled_as_recorded_and_once_degraded_the_same_way_every_time(tmp_path: Path,
                                                                                       embedder: Embedder) -> None:
    paths = [speech_clip(tmp_path, index) for index in range(2)]
    windows = enrollment_windows([load_clip(path, RATE) for path in paths], RATE)
    exemplars = exemplar_windows(windows, RATE)
    assert exemplars.shape == (2 * len(windows), windows.shape[1])
    assert np.array_equal(exemplars[: len(windows)], windows) and not np.array_equal(exemplars[len(windows):], windows)
    embeddings = embed_clips(embedder, paths, min_speech_s=8.0)
    assert len(embeddings) == len(exemplars) and torch.equal(embeddings, embed_clips(embedder, paths, min_speech_s=8.0))


def test_a_long_enrollment_keeps_at_most_32_windows_spread_from_first_to_last() -> None:
    windows = np.stack([np.full(2 * RATE, index / 100, dtype=np.float32) for index in range(100)])
    exemplars = exemplar_windows(windows, RATE)
    assert MAX_ENROLLED_WINDOWS == 32 and exemplars.shape == (64, 2 * RATE)
    kept = exemplars[:32, 0] * 100
    assert kept[0] == 0 and round(kept[-1]) == 99 and np.all(np.diff(kept) >= 2.9)  # about every third window
    assert len(exemplar_windows(windows[:20], RATE)) == 40  # 20 s of speech: every window kept


def test_too_little_speech_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(EnrollmentError, match="of speech"):
        embed_clips(embedder, [speech_clip(tmp_path, 0)], min_speech_s=10.0)


def test_music_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    paths = [speech_clip(tmp_path, 0), chords_clip(tmp_path)]
    assert load_clip(paths[1], RATE).level_spread_db < MIN_LEVEL_SPREAD_DB
    with pytest.raises(EnrollmentError, match="music"):
        embed_clips(embedder, paths, min_speech_s=1.0)


def test_mostly_silent_clip_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    speech, rate = sf.read(speech_clip(tmp_path, 1), dtype="float32")
    padded = np.concatenate([speech, np.zeros(rate * 30, dtype=np.float32)])
    path = tmp_path / "silent.wav"
    sf.write(path, padded, rate)
    with pytest.raises(EnrollmentError, match="mostly silence"):
        embed_clips(embedder, [speech_clip(tmp_path, 0), path], min_speech_s=1.0)
