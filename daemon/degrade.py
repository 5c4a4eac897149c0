"""Broadcast conditions without a codec: noise and music beds, and the telephone band. Enrollment adds one
degraded copy of each window so that a speaker enrolled from clean clips is found under them too; training
degrades its windows the same way (voicewatch.training.augment adds broadcast codecs)."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

MUSIC_SHARE = 0.30
"""Share of degraded windows under a music bed; noise lies under another 0.75 − this, nothing under the rest."""
BED_SHARE = 0.75
"""Share of degraded windows under a bed of either kind."""
PHONE_SHARE = 0.3
"""Share of degraded windows put through the telephone band."""
CHORDS_RMS = 1.5
"""About the RMS of `music_bed` (three tones, five harmonics each)."""


def at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`signal` with `noise` added at `snr_db` dB below it."""
    power = np.mean(signal**2) + 1e-10
    noise_power = np.mean(noise**2) + 1e-10
    return signal + noise * np.sqrt(power / (noise_power * 10 ** (snr_db / 10)))


def noise_bed(length: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(length).astype(np.float32)
    if rng.random() < 0.5:
        return white
    brown = np.cumsum(white)  # a rumble-heavy colour, like hum and crowd
    return (brown - np.convolve(brown, np.ones(64) / 64, mode="same")).astype(np.float32)


def music_bed(length: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Chords of harmonic tones that change every half second: a crude but real music bed."""
    t = np.arange(length) / rate
    out = np.zeros(length, dtype=np.float32)
    step = rate // 2
    for start in range(0, length, step):
        segment = slice(start, min(length, start + step))
        for _ in range(3):
            f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
            for harmonic in range(1, 6):
                out[segment] += np.sin(2 * np.pi * f0 * harmonic * t[segment]) / harmonic
    return out


def recorded_bed(length: int, music: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random stretch of a random recorded track (repeated if the track is shorter), as loud as the chords of
    `music_bed` (RMS 1.5) so that either can stand in for the other."""
    track = music[int(rng.integers(len(music)))]
    start = int(rng.integers(max(1, len(track) - length)))
    bed = np.resize(track[start:start + length], length)
    return (bed * (CHORDS_RMS / (np.sqrt(np.mean(bed**2)) + 1e-6))).astype(np.float32)


def any_music_bed(length: int, rate: int, rng: np.random.Generator, music: list[np.ndarray]) -> np.ndarray:
    """Recorded music half the time when there is some, chords otherwise."""
    if music and rng.random() < 0.5:
        return recorded_bed(length, music, rng)
    return music_bed(length, rate, rng)


def telephone(waves: np.ndarray, rate: int) -> np.ndarray:
    """Down to 8 kHz and back: the 300-3400 Hz world of call-ins."""
    low = torchaudio.functional.resample(torch.from_numpy(waves), rate, 8000)
    return torchaudio.functional.resample(low, 8000, rate)[..., : waves.shape[-1]].numpy()


def check_music_share(share: float, name: str = "music share") -> None:
    """Refuse a music share outside 0 to BED_SHARE (NaN too), in the words of `name`."""
    if not 0 <= share <= BED_SHARE:
        raise ValueError(f"{name} must be from 0 to {BED_SHARE}, not {share}")


def degrade(windows: np.ndarray, rate: int, rng: np.random.Generator, music: list[np.ndarray] = (),
            music_share: float = MUSIC_SHARE) -> np.ndarray:
    """A randomly degraded copy of each [N, T] window: `music_share` of them under a music bed (from `music`, recorded
    tracks at `rate`, half the time when it is given), noise under others, some through the telephone band."""
    check_music_share(music_share)
    out = windows.copy()
    for row in range(len(out)):
        choice = rng.random()
        if choice < BED_SHARE - music_share:
            out[row] = at_snr(out[row], noise_bed(out.shape[1], rng), rng.uniform(0, 20))
        elif choice < BED_SHARE:
            out[row] = at_snr(out[row], any_music_bed(out.shape[1], rate, rng, music), rng.uniform(0, 20))
    phone = rng.random(len(out)) < PHONE_SHARE
    if phone.any():
        out[phone] = telephone(out[phone], rate)
    return out
