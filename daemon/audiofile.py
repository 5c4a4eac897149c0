"""Read recordings into float32 arrays: soundfile for WAV/FLAC/OGG, PyAV for everything FFmpeg decodes."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

_LOG = logging.getLogger(__name__)


class AudioFileError(ValueError):
    """A file that does not exist, cannot be decoded, or holds no audio."""


@dataclasses.dataclass(frozen=True)
class TrackChoice:
    """Which audio track of a multi-track recording (an MPEG-TS with several languages or services)."""

    pid: int | None = None
    """The track's PID (MPEG-TS) or stream id."""
    languages: tuple[str, ...] = ()
    """ISO-639-2 codes in order of preference; the first audio track when none matches."""

    @property
    def chosen(self) -> bool:
        return self.pid is not None or bool(self.languages)


def read_audio(path: str | os.PathLike[str], track: TrackChoice = TrackChoice()) -> tuple[np.ndarray, int]:
    """Return (samples [frames, channels] float32 in [-1, 1], sample rate)."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    if track.chosen:
        return _read_with_pyav(path, track)
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


def _pick(streams: list, track: TrackChoice, path: Path):  # noqa: ANN202 - av.AudioStream, imported lazily
    if track.pid is not None:
        by_pid = [s for s in streams if s.id == track.pid]
        if not by_pid:
            raise AudioFileError(f"{path}: no audio track with PID {track.pid:#x}; tracks: "
                                 + ", ".join(f"{s.id:#x} ({s.metadata.get('language', '?')})" for s in streams))
        return by_pid[0]
    for language in track.languages:
        for stream in streams:
            if stream.metadata.get("language") == language:
                return stream
    return streams[0]


def _read_with_pyav(path: Path, track: TrackChoice = TrackChoice()) -> tuple[np.ndarray, int]:
    """Decode the chosen (else the first) audio stream of any container; corrupt packets are skipped and counted."""
    import av

    chunks: list[np.ndarray] = []
    skipped = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream")
            stream = _pick(list(container.streams.audio), track, path)
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
