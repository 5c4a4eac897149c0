"""Per-stream sample buffers → fixed-length windows with a hop, on a sample-count clock.

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


class WindowBuffer:
    """Holds the samples of one stream that a future window still needs; nothing more."""

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
        self._buffer = np.empty(self.length * 2, dtype=np.float32)
        self._filled = 0
        """Samples held, starting at `_next_start`."""

    @property
    def time(self) -> float:
        """Stream time just after the last sample received."""
        return self.origin_pts + self.received / self.rate

    def push(self, samples: np.ndarray) -> list[Window]:
        """Append mono samples; return the windows they complete, oldest first."""
        self.received += len(samples)
        needed = self._filled + len(samples)
        if needed > len(self._buffer):
            grown = np.empty(max(needed, 2 * len(self._buffer)), dtype=np.float32)
            grown[: self._filled] = self._buffer[: self._filled]
            self._buffer = grown
        self._buffer[self._filled : needed] = samples
        self._filled = needed
        windows = []
        while self._filled >= self.length:
            start = self._next_start
            windows.append(
                Window(
                    stream=self.stream,
                    rate=self.rate,
                    start=self.origin_pts + start / self.rate,
                    end=self.origin_pts + (start + self.length) / self.rate,
                    wall_start=None if self.origin_wall is None else self.origin_wall + start / self.rate,
                    samples=self._buffer[: self.length].copy(),
                )
            )
            self._drop(self.hop)
        return windows

    def _drop(self, count: int) -> None:
        keep = self._filled - count  # hop <= length, so never negative
        self._buffer[:keep] = self._buffer[count : self._filled]
        self._filled = keep
        self._next_start += count
