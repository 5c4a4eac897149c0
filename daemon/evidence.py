"""Evidence clips: the audio each detected segment was decided on, cut when the segment ends.

The core shows it every tick's windows (`listen`) and every event before it is published
(`annotate`). A segment's clip runs from `pad_s` before its start to `pad_s` after its end, at most
`max_s` seconds (a longer segment keeps its beginning, cut as soon as that much is heard). The audio
comes from a `RecentAudio`, told each tick which streams still need audio from when: the open
segments' starts, published or not. The `end` event names the clip; the writer stores it later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from voicewatch.clipstore import ClipInfo, ClipStore, ClipWriter
from voicewatch.config import ClipsConfig, WindowConfig
from voicewatch.detector import central_hop_edge
from voicewatch.protocol import Event
from voicewatch.recentaudio import ClipAudio, RecentAudio
from voicewatch.windows import Item, Window

_LOG = logging.getLogger(__name__)
OpenStarts = Callable[[], Iterable[tuple[str, str, float]]]
"""(stream, speaker, start) of the detector's open segments."""


class EvidenceRecorder(Collector):
    def __init__(self, config: ClipsConfig, windows: WindowConfig, open_starts: OpenStarts, max_streams: int) -> None:
        self.config = config
        self.windows = windows
        self.edge = central_hop_edge(windows.length_s, windows.hop_s)
        self.open_starts = open_starts
        assert config.path is not None
        self.store = ClipStore(config.path, round(config.max_mb * 1e6),
                               None if config.max_age_days is None else config.max_age_days * 86400)
        self.writer = ClipWriter(self.store, config.queue)
        # a segment's clip begins pad_s before its start, which lies a window's edge inside its first
        # window; that window may still be to come: keep a window and the pad behind the newest sample
        self.audio = RecentAudio(windows.length_s + config.pad_s, max_streams)
        self.missing = 0
        """Segments whose audio was no longer held (a core restarted mid-segment, streams beyond the limit)."""
        self._early: dict[tuple[str, str], ClipAudio] = {}
        """Clips of open segments that reached `max_s`, cut already, waiting for their `end` event."""

    def listen(self, items: Sequence[Item]) -> None:
        for item in items:
            if isinstance(item, Window):
                self.audio.add(item)

    def annotate(self, events: Sequence[Event]) -> list[Event]:
        """Take the clips of the segments these events end; the `end` events come back naming them."""
        out = []
        for event in events:
            if event.type == "end" and event.speaker is not None:
                event = self._take(event)
            elif event.reason == "eos":
                self.audio.forget(event.stream)
            out.append(event)
        self._cut_long_segments()
        return out

    def _take(self, event: Event) -> Event:
        start = event.start - self.config.pad_s
        early = self._early.pop((event.stream, event.speaker), None)  # type: ignore[arg-type]
        audio = early if early is not None and abs(early.start - start) < 1.0 else None
        if audio is None:
            audio = self.audio.cut(event.stream, start, min(event.end + self.config.pad_s, start + self.config.max_s))
        if audio is None or len(audio.samples) == 0:
            self.missing += 1
            return event
        info = ClipInfo(
            id=self.store.new_id(), stream=event.stream, speaker=event.speaker or "", rate=audio.rate,
            start=round(audio.start, 6), end=round(audio.end, 6), segment_start=event.start, segment_end=event.end,
            first_window=round(event.start - self.edge, 6), window_s=self.windows.length_s, hop_s=self.windows.hop_s,
            peak=event.peak, mean=event.mean,
            wall_start=None if event.wall_start is None else round(event.wall_start - (event.start - audio.start), 6),
        )
        if not self.writer.submit(info, audio):
            return event
        return dataclasses.replace(event, clip=info.id)

    def _cut_long_segments(self) -> None:
        """Cut the clips of segments that have reached `max_s`, and tell the audio what it must keep."""
        needed: dict[str, float] = {}
        still_open = set()
        for stream, speaker, start in self.open_starts():
            still_open.add((stream, speaker))
            begin = start - self.config.pad_s
            if (stream, speaker) in self._early:
                continue
            newest = self.audio.newest(stream)
            if newest is not None and newest >= begin + self.config.max_s - 1e-6:
                held = self.audio.cut(stream, begin, begin + self.config.max_s)
                if held is not None:
                    self._early[(stream, speaker)] = held
            else:
                needed[stream] = min(needed.get(stream, begin), begin)
        for key in [k for k in self._early if k not in still_open]:
            del self._early[key]
        self.audio.trim(needed)

    def close(self) -> None:
        self.writer.close()

    def counts(self) -> dict[str, int]:
        return {"written": self.writer.written, "dropped": self.writer.dropped, "failed": self.writer.failed,
                "missing": self.missing, "stored": len(self.store), "stored_bytes": self.store.bytes}

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        clips = CounterMetricFamily("voicewatch_clips", "Evidence clips by outcome: written, dropped (the writer's "
                                    "queue was full), failed (the disk refused), missing (audio no longer held)",
                                    labels=["outcome"])
        counts = self.counts()
        for outcome in ("written", "dropped", "failed", "missing"):
            clips.add_metric([outcome], counts[outcome])
        yield clips
        yield GaugeMetricFamily("voicewatch_clip_store_bytes", "Bytes in the clip store", value=counts["stored_bytes"])
