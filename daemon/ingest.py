"""Ingest frames → per-stream state → windows and stream breaks, with a counter for every drop.

A bad frame costs only itself: it is counted by reason, logged at a bounded rate, and every
other frame of every stream is handled as if it had never arrived.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence

from voicewatch.config import IngestConfig, WindowConfig
from voicewatch.protocol import BadFrame, Frame, decode_frame
from voicewatch.windows import Item, SourceNotice, StreamBreak, WindowBuffer

_LOG = logging.getLogger(__name__)
SILENCE_PEAK = 10 ** (-60 / 20)


@dataclasses.dataclass(frozen=True)
class StreamState:
    """A read-only view of one live stream, for health checks, status and metrics: they read this, not
    the ingest's tables."""

    name: str
    rate: int
    time: float
    """Stream time of the next sample."""
    audio_s: float
    """Seconds of audio received since the stream (or its last break) began."""
    first_seen: float
    """Monotonic time of its first frame."""
    last_seen: float
    """Monotonic time of its last frame."""
    last_sound: float
    """Monotonic time of its last frame that was not near-silent."""
    origin_wall: float | None
    """UTC epoch of its first sample, when the source sends wall-clock time."""

    def real_time_factor(self, now: float) -> float | None:
        """Audio received over time elapsed since the first frame (None in its first half second)."""
        elapsed = now - self.first_seen
        return self.audio_s / elapsed if elapsed > 0.5 else None

    def lag_s(self, wall: float) -> float | None:
        """How far the received audio trails the wall clock (None without wall-clock time)."""
        return None if self.origin_wall is None else wall - self.origin_wall - self.audio_s


WALL_REANCHOR_S = 1.0
"""A frame whose `wall` is this far from the time the stream's clock predicts moves the clock's wall
anchor (a DVB source that learned the broadcast time late); windows are not reset."""


class RateLimitedLog:
    """One log line per reason per `interval` seconds, carrying the count of suppressed ones."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()

    def warning(self, reason: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval) < self.interval:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        suffix = f" ({suppressed} more like it suppressed)" if suppressed else ""
        _LOG.warning(message + suffix, *args)


class Ingest:
    """All streams' state; `accept` turns one multipart message into ready items."""

    def __init__(self, ingest: IngestConfig, windows: WindowConfig) -> None:
        self.config = ingest
        self.windows = windows
        self.buffers: dict[str, WindowBuffer] = {}
        self.next_seq: dict[str, int] = {}
        self.first_seen: dict[str, float] = {}
        """Monotonic time of each live stream's first frame (for its real-time factor)."""
        self.last_seen: dict[str, float] = {}
        self.last_sound: dict[str, float] = {}
        """Monotonic time of each stream's last frame that was not near-silent (peak above -60 dBFS)."""
        self.frames = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        """Bad frames by reason."""
        self._log = RateLimitedLog()

    def streams(self) -> list[StreamState]:
        """Every live stream's state, as of now."""
        return [StreamState(name, buffer.rate, buffer.time, buffer.received / buffer.rate, self.first_seen[name],
                            self.last_seen[name], self.last_sound[name], buffer.origin_wall)
                for name, buffer in self.buffers.items()]

    def accept(self, parts: Sequence[bytes | memoryview]) -> list[Item]:
        try:
            frame = decode_frame(list(parts), self.config.max_frame_bytes)
            items = self._apply(frame)
        except BadFrame as bad:
            self.dropped[bad.reason] += 1
            self._log.warning(bad.reason, "dropped ingest frame (%s): %s", bad.reason, bad)
            return []
        self.frames += 1
        return items

    def _apply(self, frame: Frame) -> list[Item]:
        header, stream = frame.header, frame.stream
        buffer = self.buffers.get(stream)
        items: list[Item] = []
        if buffer is None:
            if len(self.buffers) >= self.config.max_streams:
                raise BadFrame("too_many_streams", f"stream {stream!r} exceeds the limit of {self.config.max_streams} streams")
            buffer = self._open(stream, frame)
        else:
            expected = self.next_seq[stream]
            if header.seq < expected:
                raise BadFrame("seq_backwards", f"stream {stream!r}: seq {header.seq} after {expected - 1}")
            reason = "seq_gap" if header.seq > expected else "rate_change" if header.rate != buffer.rate else None
            if reason:
                items.append(StreamBreak(stream, reason, buffer.time, header.pts, _wall_at(buffer)))
                buffer = self._open(stream, frame)
            elif header.wall is not None:
                _reanchor_wall(buffer, header.wall)
        self.next_seq[stream] = header.seq + 1
        self.last_seen[stream] = now = time.monotonic()
        self.first_seen.setdefault(stream, now)
        samples = frame.samples
        peak = SILENCE_PEAK / frame.scale
        if samples.size and (samples.max() > peak or -samples.min() > peak):  # no |x| copy
            self.last_sound[stream] = now
        else:
            self.last_sound.setdefault(stream, now)
        if header.status is not None:
            items.append(SourceNotice(stream, header.status, buffer.time, _wall_at(buffer)))
        items.extend(buffer.push(frame.samples))
        if header.eos:
            items.append(StreamBreak(stream, "eos", buffer.time, buffer.time, _wall_at(buffer)))
            self.close(stream)
        return items

    def _open(self, stream: str, frame: Frame) -> WindowBuffer:
        buffer = WindowBuffer(stream, frame.header.rate, self.windows.length_s, self.windows.hop_s,
                              frame.header.pts, frame.header.wall, frame.samples.dtype)
        self.buffers[stream] = buffer
        return buffer

    def close(self, stream: str) -> None:
        for table in (self.buffers, self.next_seq, self.first_seen, self.last_seen, self.last_sound):
            table.pop(stream, None)


def _reanchor_wall(buffer: WindowBuffer, wall: float) -> None:
    predicted = _wall_at(buffer)
    if predicted is None or abs(wall - predicted) > WALL_REANCHOR_S:
        buffer.origin_wall = wall - buffer.received / buffer.rate


def _wall_at(buffer: WindowBuffer) -> float | None:
    if buffer.origin_wall is None:
        return None
    return buffer.origin_wall + buffer.received / buffer.rate
