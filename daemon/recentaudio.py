"""The last seconds of each stream's audio, so that a segment's clip can be cut once the segment ends.

Fed with the windows a stream is cut into (each adds only the samples the previous one did not
have), asked for `cut(stream, start, end)` in stream time, and told by `trim(needed)` from which
time on each stream's audio is still wanted; everything older goes, beyond a short tail kept for
segments that have not begun yet. Samples are held as int16 (what a clip stores), per stream in
runs of contiguous audio: a break or a new rate starts a new run, and the older run is kept only
until the next `trim` (the clips of segments that the break ended are cut before that).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from voicewatch.windows import Window


@dataclasses.dataclass(frozen=True)
class ClipAudio:
    """Contiguous mono audio of one stream."""

    rate: int
    start: float
    """Stream time of the first sample, seconds."""
    samples: np.ndarray
    """int16."""

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / self.rate


@dataclasses.dataclass
class _Run:
    rate: int
    start: float
    chunks: collections.deque[np.ndarray]
    held: int = 0
    """Samples held in `chunks`."""

    @property
    def end(self) -> float:
        return self.start + self.held / self.rate

    def drop_before(self, time: float) -> None:
        """Forget whole chunks that end before `time`."""
        while self.chunks and self.start + len(self.chunks[0]) / self.rate <= time:
            gone = self.chunks.popleft()
            self.start += len(gone) / self.rate
            self.held -= len(gone)


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).round().astype(np.int16)


class RecentAudio:
    def __init__(self, tail_s: float, max_streams: int) -> None:
        self.tail_s = tail_s
        """Seconds kept behind each stream's newest sample when no segment needs more."""
        self.max_streams = max_streams
        self._runs: collections.OrderedDict[str, list[_Run]] = collections.OrderedDict()

    def add(self, window: Window) -> None:
        """Append what `window` adds to its stream's newest run (or start a run where it does not continue it)."""
        runs = self._runs.get(window.stream)
        if runs is None:
            runs = self._runs[window.stream] = []
            while len(self._runs) > self.max_streams:
                self._runs.popitem(last=False)
        else:
            self._runs.move_to_end(window.stream)
        last = runs[-1] if runs else None
        skip = 0 if last is None else round((last.end - window.start) * window.rate)
        if last is None or last.rate != window.rate or not 0 <= skip < len(window.samples):
            runs.append(_Run(window.rate, window.start, collections.deque()))
            last, skip = runs[-1], 0
        new = to_int16(window.samples[skip:])
        last.chunks.append(new)
        last.held += len(new)

    def cut(self, stream: str, start: float, end: float) -> ClipAudio | None:
        """The held audio of `stream` between `start` and `end` (clamped to what is held), from the run that
        covers most of that range; None when nothing is held there."""
        best, best_overlap = None, 0.0
        for run in self._runs.get(stream, ()):
            overlap = min(end, run.end) - max(start, run.start)
            if overlap > best_overlap:
                best, best_overlap = run, overlap
        if best is None:
            return None
        joined = np.concatenate(best.chunks)
        first = max(0, round((start - best.start) * best.rate))
        last = min(len(joined), round((end - best.start) * best.rate))
        return ClipAudio(best.rate, best.start + first / best.rate, joined[first:last].copy())

    def trim(self, needed: dict[str, float]) -> None:
        """Keep each stream's newest run from `min(needed[stream], newest sample - tail_s)` on; older runs
        (before a break) go: the segments that needed them ended at the break."""
        for stream, runs in self._runs.items():
            newest = runs[-1]
            newest.drop_before(min(needed.get(stream, np.inf), newest.end - self.tail_s))
            runs[:] = [newest]

    def newest(self, stream: str) -> float | None:
        """Stream time just after the newest sample held of `stream`."""
        runs = self._runs.get(stream)
        return runs[-1].end if runs else None

    def forget(self, stream: str) -> None:
        self._runs.pop(stream, None)

    def held_samples(self) -> int:
        return sum(run.held for runs in self._runs.values() for run in runs)
