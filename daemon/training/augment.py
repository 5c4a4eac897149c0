"""Broadcast-condition augmentation of 2 s windows for training: the degradations of voicewatch.degrade (noise and
music beds, telephone band) plus MP2/AAC coding at broadcast bitrates (through FFmpeg with PyAV, the windows of a
batch joined into one stream so the codec runs once per batch)."""

from __future__ import annotations

import numpy as np

from voicewatch.degrade import BED_SHARE, MUSIC_SHARE, any_music_bed, check_music_share, degrade, noise_bed
from voicewatch.training.codecs import codec_roundtrip

__all__ = ["BED_SHARE", "MUSIC_SHARE", "CODED_SHARE", "CODEC_BITRATES", "any_music_bed", "augment", "check_music_share",
           "noise_bed"]

CODED_SHARE = 0.25
"""Share of augmented windows that go through a broadcast codec."""
CODEC_BITRATES = {"mp2": (32000, 64000, 96000), "aac": (16000, 24000, 48000)}
"""Bitrates for mono at 22.05 kHz, down to where the codecs cut the top band (MP2 32 kb/s: above
5.5 kHz; AAC 16 kb/s: above 4 kHz), as low-rate radio streams do."""


def augment(windows: np.ndarray, rate: int, rng: np.random.Generator, coded_share: float = CODED_SHARE,
            music: list[np.ndarray] = (), music_share: float = MUSIC_SHARE) -> np.ndarray:
    """A randomly degraded copy of each [N, T] window (voicewatch.degrade), `coded_share` of them then through a codec
    (which needs PyAV)."""
    out = degrade(windows, rate, rng, music, music_share)
    coded = np.flatnonzero(rng.random(len(out)) < coded_share) if coded_share > 0 else []
    if len(coded):
        codec = str(rng.choice(list(CODEC_BITRATES)))
        bitrate = int(rng.choice(CODEC_BITRATES[codec]))
        joined = codec_roundtrip(out[coded].reshape(-1), rate, codec, bitrate)
        out[coded] = joined.reshape(len(coded), -1)
    return out.astype(np.float32)
