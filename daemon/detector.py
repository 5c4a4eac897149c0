"""Window scores → per stream × speaker segments: `start`, `update`, `end`, with hysteresis.

A window is positive for a speaker when its score passes the speaker's threshold, it is not
near-silent, and (by default) no other speaker's threshold is passed by a wider margin.

A segment begins at the first positive window of a run, is published (`start`) once it has
`open_windows` positive windows and its whole windows span `min_segment_s` (first window's start to
last window's end; the span it reports is the central hops', shorter by length − hop), grows with
every further positive window (`update`), and ends (`end`) after `close_windows` consecutive
negative windows. A run that never qualifies is dropped without a word.

Each window vouches for its central hop: windows overlap, and a 2 s window whose centre lies in a
turn is mostly that turn, so a run of positive windows marks the time from half a hop before its
first window's centre to half a hop after its last one's (a 2 s window with a 1 s hop gives up
0.5 s at each edge). The central hops of consecutive windows tile the stream.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from voicewatch.config import DetectorConfig
from voicewatch.protocol import Event
from voicewatch.windows import Window


def positive_windows(scores: np.ndarray, thresholds: np.ndarray, levels: np.ndarray, config: DetectorConfig,
                     ) -> np.ndarray:
    """[B, S] scores, [S] thresholds, [B] levels → [B, S] which windows name which speakers."""
    margins = scores - thresholds[None, :]
    positive = margins > 0
    if config.min_level_dbfs is not None:
        positive &= (levels >= config.min_level_dbfs)[:, None]  # near-silence names no one
    if config.one_speaker_per_window and positive.shape[1] > 1:
        positive &= margins == margins.max(axis=1, keepdims=True)  # one voice per window: the clearest match
    return positive


def central_hop_edge(length_s: float, hop_s: float) -> float:
    """Seconds of a window outside its central hop, at either end: what a segment gives up at each edge."""
    return max(0.0, (length_s - hop_s) / 2)


@dataclasses.dataclass
class _Segment:
    start: float
    end: float
    wall_start: float | None
    peak: float
    total: float
    edge: float
    """Seconds of each window outside its central hop, at either end: given up at the segment's edges."""
    hits: int = 1
    misses: int = 0
    published: bool = False

    def event(self, kind: str, stream: str, speaker: str) -> Event:
        start, end = self.start + self.edge, self.end - self.edge
        return Event(
            type=kind,
            stream=stream,
            speaker=speaker,
            start=round(start, 6),
            end=round(end, 6),
            peak=round(self.peak, 4),
            mean=round(self.total / self.hits, 4),
            wall_start=None if self.wall_start is None else round(self.wall_start + self.edge, 6),
            wall_end=None if self.wall_start is None else round(self.wall_start + self.edge + end - start, 6),
        )


class Detector:
    def __init__(self, config: DetectorConfig, hop_s: float) -> None:
        self.config = config
        self.hop_s = hop_s
        """The windows' hop (config `windows.hop_s`): each window's central hop is what it vouches for."""
        self._segments: dict[str, dict[str, _Segment]] = {}

    def open_segments(self, stream: str) -> int:
        return len(self._segments.get(stream, {}))

    def open_starts(self) -> list[tuple[str, str, float]]:
        """(stream, speaker, start) of every open segment, published or not yet, with `start` as its events
        give it: what the evidence clips still need the audio of."""
        return [(stream, name, s.start + s.edge) for stream, segments in self._segments.items()
                for name, s in segments.items()]

    def observe(self, window: Window, speakers: list[str], scores: np.ndarray, positive: np.ndarray) -> list[Event]:
        """Advance `window.stream`'s segments by one window; `scores`/`positive` are [S] in `speakers` order."""
        segments = self._segments.setdefault(window.stream, {})
        events: list[Event] = []
        hit_names = set()
        for index in np.flatnonzero(positive):
            name, score = speakers[index], float(scores[index])
            hit_names.add(name)
            segment = segments.get(name)
            if segment is None:
                edge = central_hop_edge(window.end - window.start, self.hop_s)
                segment = segments[name] = _Segment(window.start, window.end, window.wall_start, score, score, edge)
            else:
                segment.end, segment.hits, segment.misses = window.end, segment.hits + 1, 0
                segment.peak, segment.total = max(segment.peak, score), segment.total + score
            if segment.published:
                events.append(segment.event("update", window.stream, name))
            elif segment.hits >= self.config.open_windows and (
                segment.end - segment.start >= self.config.min_segment_s - 1e-9
            ):
                segment.published = True
                events.append(segment.event("start", window.stream, name))
        for name in [n for n in segments if n not in hit_names]:
            segment = segments[name]
            segment.misses += 1
            if segment.misses >= self.config.close_windows:
                del segments[name]
                if segment.published:
                    events.append(segment.event("end", window.stream, name))
        if not segments:
            del self._segments[window.stream]
        return events

    def close_stream(self, stream: str) -> list[Event]:
        """End every open segment of `stream` (gap, end of stream, shutdown)."""
        segments = self._segments.pop(stream, {})
        return [s.event("end", stream, name) for name, s in segments.items() if s.published]

    def close_speaker(self, speaker: str) -> list[Event]:
        """End `speaker`'s segments on every stream (the speaker left the bank)."""
        events = []
        for stream, segments in list(self._segments.items()):
            segment = segments.pop(speaker, None)
            if segment is not None and segment.published:
                events.append(segment.event("end", stream, speaker))
            if not segments:
                del self._segments[stream]
        return events

    def close_all(self) -> list[Event]:
        return [event for stream in list(self._segments) for event in self.close_stream(stream)]
