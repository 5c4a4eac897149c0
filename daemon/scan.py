"""`voicewatch scan`: the daemon's pipeline in-process on recordings, no sockets.

Frames are made by the same code the replay source uses and go through the same Ingest and
Pipeline objects as in `run`, so a file gives the same segments either way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

from voicewatch.audiofile import TrackChoice
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.protocol import Event
from voicewatch.sourceframes import file_frames


@dataclasses.dataclass(frozen=True)
class Segment:
    stream: str
    speaker: str
    start: float
    end: float
    peak: float
    mean: float

    @classmethod
    def from_event(cls, event: Event) -> Segment:
        assert event.speaker is not None and event.peak is not None and event.mean is not None
        return cls(event.stream, event.speaker, event.start, event.end, event.peak, event.mean)


def segments(events: Iterable[Event]) -> list[Segment]:
    """The finished segments (`end` events), in order of start time per stream."""
    found = [Segment.from_event(e) for e in events if e.type == "end"]
    return sorted(found, key=lambda s: (s.stream, s.start, s.speaker))


def scan(paths: Sequence[str | os.PathLike[str]], streams: Sequence[str], embedder: Embedder,
         bank: SpeakerBank, config: Config, chunk_s: float = 1.0, track: TrackChoice = TrackChoice()) -> list[Event]:
    """All events the core would publish for these recordings (ids unassigned)."""
    ingest = Ingest(config.ingest, config.windows)
    pipeline = Pipeline(embedder, bank, config.detector, config.windows.hop_s, config.processing.max_batch_windows)
    events: list[Event] = []
    for path, stream in zip(paths, streams, strict=True):
        batch = []
        for frame in file_frames(path, stream, chunk_s, track=track):
            batch += ingest.accept(frame)
            if len(batch) >= config.processing.max_batch_windows:
                events += pipeline.process(batch)
                batch = []
        events += pipeline.process(batch)
    return events + pipeline.close_all()
