"""Read recordings into float32 arrays: soundfile for WAV/FLAC/OGG, PyAV for everything FFmpeg decodes."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

_LOG = logging.getLogger(__name__)


class AudioFileError(ValueError):
    """A file that does not exist, cannot be decoded, or holds no audio."""


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Return (samples [frames, channels] float32 in [-1, 1], sample rate)."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        if importlib.util.find_spec("av") is None:
            raise AudioFileError(
                f"{path}: cannot decode ({exc}); for MPEG-TS/MP2/AAC/AC-3 install PyAV: pip install 'voicewatch[dvb]'"
            ) from None
        data, rate = _read_with_pyav(path)
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: holds no audio samples")
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[frames, channels] → [frames] by averaging channels."""
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)


def _read_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any container; corrupt packets are skipped and counted."""
    import av

    chunks: list[np.ndarray] = []
    skipped = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or 0
            channels = stream.codec_context.channels or 1
            resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout, rate=rate)
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    skipped += 1
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1, channels))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1, channels))
    except av.error.FFmpegError as exc:
        raise AudioFileError(f"{path}: cannot decode: {exc}") from None
    if skipped:
        _LOG.warning("%s: skipped %d undecodable packets", path, skipped)
    if not chunks:
        raise AudioFileError(f"{path}: holds no decodable audio")
    return np.concatenate(chunks), int(rate)
