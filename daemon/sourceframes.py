"""Source side of the ingest protocol: PCM chunks → numbered, time-stamped frames."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from voicewatch.audiofile import AudioFileError, TrackChoice, read_audio
from voicewatch.protocol import MAX_RATE, MIN_RATE, FrameHeader, encode_frame


class FrameEncoder:
    """Numbers one stream's frames and stamps each with the stream time of its first sample."""

    def __init__(self, stream: str, rate: int, channels: int, fmt: str, pts: float = 0.0,
                 wall: float | None = None) -> None:
        self.stream, self.rate, self.channels, self.format = stream, rate, channels, fmt
        self.seq = 0
        self.samples = 0
        self.pts0 = pts
        self.wall0 = wall

    def encode(self, interleaved: np.ndarray, eos: bool = False, status: str | None = None) -> list[bytes]:
        """[frames, channels] int16 or float32 → a multipart ingest message."""
        frames = len(interleaved)
        offset = self.samples / self.rate
        header = FrameHeader(
            seq=self.seq, rate=self.rate, channels=self.channels, format=self.format,
            pts=self.pts0 + offset, wall=None if self.wall0 is None else self.wall0 + offset, eos=eos,
            status=status,
        )
        self.seq += 1
        self.samples += frames
        return encode_frame(self.stream, header, np.ascontiguousarray(interleaved).tobytes())


def read_for_ingest(path: str | os.PathLike[str], track: TrackChoice = TrackChoice()) -> tuple[np.ndarray, int, str]:
    """Read a recording losslessly for the wire: (interleaved samples, rate, format).

    16-bit PCM files travel as `s16le` (their exact integers), everything else as `f32le`.
    """
    path = Path(path)
    if track.chosen:
        samples, rate = read_audio(path, track)
        return _checked(path, samples, rate, "f32le")
    try:
        info = soundfile.info(str(path))
        if info.subtype in ("PCM_16", "PCM_S8", "PCM_U8"):
            data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
            samples, fmt = data, "s16le"
        else:
            samples, rate = read_audio(path)
            fmt = "f32le"
    except soundfile.LibsndfileError:
        samples, rate = read_audio(path)
        fmt = "f32le"
    return _checked(path, samples, rate, fmt)


def _checked(path: Path, samples: np.ndarray, rate: int, fmt: str) -> tuple[np.ndarray, int, str]:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; resample it first")
    if samples.shape[1] > 8:
        raise AudioFileError(f"{path}: {samples.shape[1]} channels; at most 8 are supported")
    return samples, int(rate), fmt


def file_frames(path: str | os.PathLike[str], stream: str, chunk_s: float = 0.1,
                wall: float | None = None, track: TrackChoice = TrackChoice()) -> Iterator[list[bytes]]:
    """All frames of a recording, `chunk_s` seconds each, the last one marked end-of-stream."""
    samples, rate, fmt = read_for_ingest(path, track)
    encoder = FrameEncoder(stream, rate, samples.shape[1], fmt, wall=wall)
    step = max(1, round(chunk_s * rate))
    starts = range(0, len(samples), step)
    for start in starts:
        yield encoder.encode(samples[start : start + step], eos=start + step >= len(samples))
