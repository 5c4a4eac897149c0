"""Decoding the chosen audio tracks of a transport stream into PCM chunks on a sample-count clock.

A chain in the manner of faster-whisper's `audio.py`: demux (PyAV) → skip packets the demuxer marks
corrupt and packets that do not decode (both counted) → unwrap the 33-bit PTS → keep the sample
clock on the PTS (a few lost frames are filled with silence, overlaps trimmed, a jump beyond
`JUMP_S` restarts the clock) → convert to s16 → cut into chunks. A PMT change that the open demuxer
cannot follow (a new PID, another codec) closes it and opens a new one where the bytes continue.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from voicewatch.plugins.tsinput import TappedReader
from voicewatch.plugins.tspsi import Track
from voicewatch.protocol import MAX_RATE, MIN_RATE

_LOG = logging.getLogger(__name__)
PTS_WRAP = 1 << 33
"""MPEG-TS presentation timestamps count a 90 kHz clock in 33 bits (wraps every 26.5 hours)."""
JUMP_S = 0.5
"""A PTS further than this from the sample count is a discontinuity (cut, splice, reconnect)."""


class PtsClock:
    """33-bit PTS values (90 kHz ticks, wrapped or already unwrapped by FFmpeg) → monotonic seconds."""

    def __init__(self) -> None:
        self._offset = 0
        self._last: int | None = None

    def unwrap(self, pts: int) -> int:
        """`pts` placed in the wrap period nearest to the last one, without remembering it."""
        pts %= PTS_WRAP
        if self._last is None:
            return pts
        value = pts + self._offset
        if value < self._last - PTS_WRAP // 2:
            value += PTS_WRAP
        elif value > self._last + PTS_WRAP // 2 and value >= PTS_WRAP:
            value -= PTS_WRAP
        return value

    def seconds(self, pts: int) -> float:
        value = self.unwrap(pts)
        self._offset = value - pts % PTS_WRAP
        self._last = value
        return value / 90000


@dataclasses.dataclass(frozen=True)
class Chunk:
    stream: str
    pts: float
    """Stream seconds of the first sample."""
    rate: int
    samples: np.ndarray
    """int16 [frames, channels], channels 1 or 2."""
    pid: int = -1
    restart: str | None = None
    """Why the clock restarts at this chunk (`start`, `pts_jump`, `format_change`, `pmt_change`,
    `track_change`); None while it simply continues."""


@dataclasses.dataclass
class DecodeCounters:
    corrupt_packets: int = 0
    """Packets the demuxer flagged corrupt (transport errors, lost TS packets inside them): skipped."""
    undecodable_packets: int = 0
    discontinuities: int = 0
    filled_samples: int = 0
    """Silence put where a few frames were lost, so the sample clock stays on the PTS."""
    trimmed_samples: int = 0
    reopenings: int = 0


class TrackDecoder:
    """One output stream: decoded frames → chunks of `chunk_s`, stamped from the sample count."""

    def __init__(self, stream: str, chunk_s: float, counters: DecodeCounters) -> None:
        self.stream, self.chunk_s, self.counters = stream, chunk_s, counters
        self.clock = PtsClock()
        self.pid = -1
        """The PID being decoded (set by `decode`)."""
        self._resampler: Any = None
        self._format: tuple[int, str] | None = None
        self._rate = 0
        self._anchor: float | None = None
        self._count = 0
        """Samples since `_anchor` (emitted and pending)."""
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._restart: str | None = "start"

    @property
    def position(self) -> float | None:
        """Stream seconds of the next sample."""
        return None if self._anchor is None else self._anchor + self._count / self._rate

    def restart(self, reason: str) -> list[Chunk]:
        """What is pending, then a clock restart at the next frame."""
        chunks = self.flush()
        self._anchor, self._restart = None, reason
        return chunks

    def push(self, frame: Any) -> list[Chunk]:
        chunks: list[Chunk] = []
        layout = "mono" if len(frame.layout.channels) == 1 else "stereo"
        if self._format != (frame.sample_rate, layout):
            if self._format is not None:
                chunks += self.restart("format_change")
            self._format = (frame.sample_rate, layout)
            self._rate = frame.sample_rate if MIN_RATE <= frame.sample_rate <= MAX_RATE else MAX_RATE
            import av

            self._resampler = av.AudioResampler(format="s16", layout=layout, rate=self._rate)
        start = self.clock.seconds(frame.pts) if frame.pts is not None else self.position
        samples = np.concatenate([o.to_ndarray().reshape(-1, len(o.layout.channels))
                                  for o in self._resampler.resample(frame)] or [np.zeros((0, 1), np.int16)])
        position = self.position
        if position is not None and start is not None:
            drift = start - position
            tolerance = max(0.002, 0.5 * frame.samples / frame.sample_rate)
            if abs(drift) > JUMP_S:
                self.counters.discontinuities += 1
                _LOG.warning("%s: PTS jump of %+.3f s: the stream clock restarts", self.stream, drift)
                chunks += self.restart("pts_jump")
            elif drift > tolerance:
                fill = round(drift * self._rate)
                self.counters.filled_samples += fill
                self._append(np.zeros((fill, samples.shape[1]), np.int16))
            elif drift < -tolerance:
                trim = min(len(samples), round(-drift * self._rate))
                self.counters.trimmed_samples += trim
                samples = samples[trim:]
        if self._anchor is None:
            self._anchor, self._count = (start if start is not None else 0.0), 0
        self._append(samples)
        return chunks + self._emit(final=False)

    def flush(self) -> list[Chunk]:
        return self._emit(final=True)

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pending.append(samples)
            self._pending_len += len(samples)
            self._count += len(samples)

    def _emit(self, final: bool) -> list[Chunk]:
        size = max(1, round(self.chunk_s * self._rate)) if self._rate else 1
        if not self._pending_len or (not final and self._pending_len < size):
            return []
        assert self._anchor is not None
        data = np.concatenate(self._pending)
        first = self._count - self._pending_len
        cut = len(data) if final else len(data) // size * size
        chunks = []
        for offset in range(0, cut, size):
            piece = data[offset : min(offset + size, cut)]
            chunks.append(Chunk(self.stream, self._anchor + (first + offset) / self._rate, self._rate, piece,
                                self.pid, self._restart))
            self._restart = None
        self._pending = [data[cut:]] if cut < len(data) else []
        self._pending_len = len(data) - cut
        return chunks


Plan = Callable[[], dict[str, Track]]
"""The track each output stream should decode now (asked again whenever the PSI changes)."""


def decode(reader: TappedReader, plan: Plan, chunk_s: float, counters: DecodeCounters,
           decoders: dict[str, TrackDecoder] | None = None) -> Iterator[Chunk]:
    """Chunks of every planned stream until the input ends; `decoders` carries clocks across calls."""
    import av

    decoders = {} if decoders is None else decoders
    reopen = True
    while reopen:
        reopen = False
        with av.open(reader, format="mpegts", mode="r") as container:
            by_pid = {s.id: s for s in container.streams.audio}
            wanted = plan()
            _announce(wanted, by_pid)
            generation = reader.monitor.generation
            for packet in container.demux(*by_pid.values()):
                if reader.monitor.generation != generation:
                    generation = reader.monitor.generation
                    changed = plan()
                    if _needs_reopen(changed, wanted, by_pid):
                        _LOG.info("PMT change to tracks the open demuxer lacks: reopening")
                        counters.reopenings += 1
                        reopen = True
                        break
                    for stream, track in changed.items():
                        if stream in decoders and wanted.get(stream) != track:
                            _LOG.info("%s: now decoding PID %d (%s, %s)", stream, track.pid, track.codec, track.language)
                            yield from decoders[stream].restart("track_change")
                    wanted = changed
                targets = [s for s, t in wanted.items() if t.pid == packet.stream.id]
                if not targets:
                    continue
                if packet.is_corrupt:
                    counters.corrupt_packets += 1
                    continue
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    counters.undecodable_packets += 1
                    continue
                for frame in frames:
                    for stream in targets:
                        decoder = decoders.setdefault(stream, TrackDecoder(stream, chunk_s, counters))
                        decoder.pid = packet.stream.id
                        yield from decoder.push(frame)
        if reopen:
            for decoder in decoders.values():
                yield from decoder.restart("pmt_change")
    for decoder in decoders.values():
        yield from decoder.flush()


def _needs_reopen(changed: dict[str, Track], wanted: dict[str, Track], by_pid: dict[int, Any]) -> bool:
    """A newly planned track on a PID the open demuxer does not have, or with another codec."""
    return any(track != wanted.get(stream) and (track.pid not in by_pid or _codec(by_pid[track.pid]) != track.codec)
               for stream, track in changed.items())


def _codec(stream: Any) -> str:
    name = stream.codec_context.name
    return {"mp3float": "mp2", "mp3": "mp2", "mp2float": "mp2", "aac_latm": "aac_latm"}.get(name, name)


def _announce(wanted: dict[str, Track], by_pid: dict[int, Any]) -> None:
    for stream, track in wanted.items():
        if track.pid in by_pid:
            context = by_pid[track.pid].codec_context
            _LOG.info("%s: decoding PID %d (%s, %s Hz, %s)", stream, track.pid, context.name, context.sample_rate,
                      track.language or "no language")
        else:
            _LOG.warning("%s: PID %d is in the PMT but the demuxer found no decodable stream on it", stream, track.pid)
