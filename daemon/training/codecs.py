"""Broadcast codecs in and out: audio through an FFmpeg encoder (PyAV) and back, aligned to the input."""

from __future__ import annotations

import fractions
import io

import numpy as np

CONTAINERS = {"mp2": "mp2", "aac": "adts"}
"""Codec → the raw container FFmpeg writes it in."""


def codec_roundtrip(audio: np.ndarray, rate: int, codec: str, bitrate: int) -> np.ndarray:
    """Mono float32 `audio` encoded with `codec` (mp2: MPEG Layer II; aac: AAC-LC) at `bitrate` and decoded
    again, shifted back by the codec's delay and cut to the input's length."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=CONTAINERS[codec]) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1)[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, fractions.Fraction(1, rate)
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    if np.issubdtype(decoded.dtype, np.integer):
        decoded = decoded.astype(np.float32) / 32768
    probe = min(len(audio), rate)
    delay = int(np.argmax(np.correlate(decoded[: probe + 4096], audio[:probe], mode="valid")))
    out = decoded[delay: delay + len(audio)]
    return np.pad(out, (0, len(audio) - len(out))).astype(np.float32)
