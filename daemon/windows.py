"""Per-stream sample buffers → fixed-length windows with a hop, on a sample-count clock; the windows, breaks
and notices that ingest hands the pipeline.

Window k of a run starts `k × hop` samples after the run's first sample; its stream time is the
run's first `pts` plus that count over the rate. Arrival time and later `pts` values never move a
window, so the same audio cut into any chunk sizes gives exactly the same windows.
"""

from __future__ import annotations

import dataclasses

import numpy as np


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
    """Holds the samples of one stream that a future window still needs, and little more.

    Samples are appended to an array that is never written twice: a window is a view of it (no copy),
    and when the array is full the samples still needed move to a fresh one, leaving the old array to
    the windows that view it. With room for a window and a hop that move happens every other window
    and copies one window less a hop, where copying each window and shifting the buffer by a hop
    moved a window and a half of samples per window.
    """

    def __init__(self, stream: str, rate: int, length_s: float, hop_s: float, pts: float, wall: float | None) -> None:
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
        self._buffer = np.empty(self.length + self.hop, dtype=np.float32)
        self._first = 0
        """Where in `_buffer` the held samples begin."""
        self._filled = 0
        """Samples held, starting at `_next_start`."""

    @property
    def nbytes(self) -> int:
        """Bytes of the array the stream's samples are held in (windows handed out may keep an older one alive)."""
        return self._buffer.nbytes

    @property
    def time(self) -> float:
        """Stream time just after the last sample received."""
        return self.origin_pts + self.received / self.rate

    def push(self, samples: np.ndarray) -> list[Window]:
        """Append mono samples; return the windows they complete, oldest first. A window's samples are
        a read-only view that later pushes never change."""
        self.received += len(samples)
        end = self._first + self._filled
        if end + len(samples) > len(self._buffer):
            self._move_to_fresh_array(len(samples))
            end = self._filled
        self._buffer[end:end + len(samples)] = samples
        self._filled += len(samples)
        windows = []
        while self._filled >= self.length:
            start = self._next_start
            view = self._buffer[self._first:self._first + self.length]
            view.flags.writeable = False
            windows.append(
                Window(
                    stream=self.stream,
                    rate=self.rate,
                    start=self.origin_pts + start / self.rate,
                    end=self.origin_pts + (start + self.length) / self.rate,
                    wall_start=None if self.origin_wall is None else self.origin_wall + start / self.rate,
                    samples=view,
                )
            )
            self._first += self.hop  # hop <= length, so never past the held samples
            self._filled -= self.hop
            self._next_start += self.hop
        return windows

    def _move_to_fresh_array(self, incoming: int) -> None:
        fresh = np.empty(max(self.length + self.hop, self._filled + incoming), dtype=np.float32)
        fresh[:self._filled] = self._buffer[self._first:self._first + self._filled]
        self._buffer, self._first = fresh, 0
