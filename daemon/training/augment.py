"""Broadcast-condition augmentation of 2 s windows: noise and music beds, telephone band, and MP2/AAC
coding at broadcast bitrates (through FFmpeg with PyAV, the windows of a batch joined into one
stream so the codec runs once per batch)."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from voicewatch.training.codecs import codec_roundtrip

CODED_SHARE = 0.25
"""Share of augmented windows that go through a broadcast codec."""
MUSIC_SHARE = 0.30
"""Share of augmented windows under a music bed; noise lies under another 0.75 − this, nothing under the rest."""
BED_SHARE = 0.75
"""Share of augmented windows under a bed of either kind."""
CHORDS_RMS = 1.5
"""About the RMS of `music_bed` (three tones, five harmonics each)."""
CODEC_BITRATES = {"mp2": (32000, 64000, 96000), "aac": (16000, 24000, 48000)}
"""Bitrates for mono at 22.05 kHz, down to where the codecs cut the top band (MP2 32 kb/s: above
5.5 kHz; AAC 16 kb/s: above 4 kHz), as low-rate radio streams do."""


def _at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
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


def augment(windows: np.ndarray, rate: int, rng: np.random.Generator, coded_share: float = CODED_SHARE,
            music: list[np.ndarray] = (), music_share: float = MUSIC_SHARE) -> np.ndarray:
    """A randomly degraded copy of each [N, T] window (`coded_share` of them through a codec, which needs PyAV);
    `music_share` of them under a music bed, from `music` (recorded tracks at `rate`) half the time when it is given."""
    check_music_share(music_share)
    out = windows.copy()
    for row in range(len(out)):
        choice = rng.random()
        if choice < BED_SHARE - music_share:
            out[row] = _at_snr(out[row], noise_bed(out.shape[1], rng), rng.uniform(0, 20))
        elif choice < BED_SHARE:
            out[row] = _at_snr(out[row], any_music_bed(out.shape[1], rate, rng, music), rng.uniform(0, 20))
    phone = rng.random(len(out)) < 0.3
    if phone.any():
        out[phone] = telephone(out[phone], rate)
    coded = np.flatnonzero(rng.random(len(out)) < coded_share) if coded_share > 0 else []
    if len(coded):
        codec = str(rng.choice(list(CODEC_BITRATES)))
        bitrate = int(rng.choice(CODEC_BITRATES[codec]))
        joined = codec_roundtrip(out[coded].reshape(-1), rate, codec, bitrate)
        out[coded] = joined.reshape(len(coded), -1)
    return out.astype(np.float32)
