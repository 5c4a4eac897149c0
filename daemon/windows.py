"""Per-stream sample buffers → fixed-length windows with a hop, on a sample-count clock; the windows, breaks
and notices that ingest hands the pipeline.

Window k of a run starts `k × hop` samples after the run's first sample; its stream time is the
run's first `pts` plus that count over the rate. Arrival time and later `pts` values never move a
window, so the same audio cut into any chunk sizes gives exactly the same windows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from voicewatch.protocol import sample_scale


@dataclasses.dataclass(frozen=True)
class Window:
    stream: str
    rate: int
    start: float
    """Stream time of the first sample, seconds."""
    end: float
    wall_start: float | None
    """UTC epoch of the first sample, when the source sent wall-clock time."""
    samples: np.ndarray
    """Mono float32, exactly `length` samples at `rate`."""


@dataclasses.dataclass(frozen=True)
class StreamBreak:
    """A discontinuity in a stream: its open segments end here and its windows restart."""

    stream: str
    reason: str
    """`seq_gap`, `rate_change`, `eos` or `overload`."""
    start: float
    """Stream time where continuous audio stopped."""
    end: float
    """Stream time where it resumes (== start for `eos`)."""
    wall_start: float | None = None

    @property
    def is_gap(self) -> bool:
        return self.reason != "eos"


@dataclasses.dataclass(frozen=True)
class SourceNotice:
    """What a source said of its input (`status` in a frame header): published, nothing else changes."""

    stream: str
    status: str
    """One of protocol.SOURCE_STATUSES."""
    time: float
    """Stream time of the notice."""
    wall: float | None = None


Item = Window | StreamBreak | SourceNotice
"""What ingest hands the pipeline: windows, and the breaks and notices between them, in stream order."""


class WindowBuffer:
    """Holds the samples of one stream that its next window still needs, in one ring allocated once.

    The ring holds one window, as int16 while the stream sends `s16le` (its exact samples, half the
    bytes of float32) and as float32 once it sends `f32le`. Each window gets its own float32 copy and
    the ring keeps its last `length - hop` samples for the next one: nothing per stream grows, moves or
    is replaced, and a window handed out never changes.
    """

    def __init__(self, stream: str, rate: int, length_s: float, hop_s: float, pts: float, wall: float | None,
                 dtype: np.dtype | type = np.float32) -> None:
        self.stream = stream
        self.rate = rate
        self.length = round(length_s * rate)
        self.hop = round(hop_s * rate)
        self.origin_pts = pts
        self.origin_wall = wall
        self.received = 0
        """Samples received since the origin."""
        self._next_start = 0
        """Sample index (from the origin) of the next window's first sample."""
        self._ring = np.empty(self.length, dtype=dtype)
        self._end = 0
        """Where in `_ring` the next sample goes."""
        self._filled = 0
        """Samples held, starting at `_next_start`."""

    @property
    def nbytes(self) -> int:
        """Bytes of the ring the stream's samples are held in."""
        return self._ring.nbytes

    @property
    def time(self) -> float:
        """Stream time just after the last sample received."""
        return self.origin_pts + self.received / self.rate

    def push(self, samples: np.ndarray) -> list[Window]:
        """Append mono samples (int16 or float32, as protocol.Frame holds them); return the windows they
        complete, oldest first, each with its own read-only float32 samples."""
        if samples.dtype != self._ring.dtype:
            if self._ring.dtype == np.int16:  # a float frame: hold everything as float32 from now on (exactly)
                self._ring = self._ring * np.float32(sample_scale(self._ring.dtype))
            samples = samples * np.float32(sample_scale(samples.dtype))  # int16 into float32: exact
        self.received += len(samples)
        windows = []
        taken = 0
        while taken < len(samples):
            count = min(len(samples) - taken, self.length - self._filled, self.length - self._end)
            self._ring[self._end:self._end + count] = samples[taken:taken + count]
            self._end = (self._end + count) % self.length
            self._filled += count
            taken += count
            if self._filled == self.length:
                windows.append(self._window())
                self._filled -= self.hop
                self._next_start += self.hop
        return windows

    def _window(self) -> Window:
        """The full ring as a window: its oldest sample is where the next one goes."""
        start, split = self._next_start, self.length - self._end
        samples = np.empty(self.length, dtype=np.float32)
        scale = np.float32(sample_scale(self._ring.dtype))
        np.multiply(self._ring[self._end:], scale, out=samples[:split])
        np.multiply(self._ring[:self._end], scale, out=samples[split:])
        samples.flags.writeable = False
        return Window(
            stream=self.stream,
            rate=self.rate,
            start=self.origin_pts + start / self.rate,
            end=self.origin_pts + (start + self.length) / self.rate,
            wall_start=None if self.origin_wall is None else self.origin_wall + start / self.rate,
            samples=samples,
        )
