"""windows → features → embedder → bank → detector: the one code path of `run` and `scan`.

A tick's items (windows of every stream, and stream breaks) go through in one batch: windows are
grouped by sample rate, resampled and turned into log-MEL together (each window reusing the frames
it shares with its stream's previous window, see sharedframes.py), embedded together, and scored
against every speaker with one product; only the detector then walks the items in order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.config import DetectorConfig
from voicewatch.detector import Detector, positive_windows
from voicewatch.embedder import Embedder
from voicewatch.history import EmbeddingHistory
from voicewatch.protocol import Event
from voicewatch.scorer import DeviceScorer
from voicewatch.sharedframes import SharedFrames
from voicewatch.windows import Item, SourceNotice, StreamBreak, Window

_LOG = logging.getLogger(__name__)


def window_levels(windows: Sequence[Window]) -> np.ndarray:
    """[B] RMS levels in dBFS (a dot product each: no squared copy of the window)."""
    return np.array([10 * np.log10(np.dot(w.samples, w.samples) / len(w.samples) + 1e-12) for w in windows],
                    dtype=np.float32)


class Pipeline:
    def __init__(self, embedder: Embedder, bank: SpeakerBank, detector: DetectorConfig, hop_s: float,
                 max_batch: int = 2048) -> None:
        self.timed: Callable[[str], contextlib.AbstractContextManager[None]] = lambda _stage: contextlib.nullcontext()
        """Wraps each stage (`resample`, `log_mel`, `embed`, `match`, `detect`); the service plugs in metrics."""
        self.max_batch = max_batch
        self.history: EmbeddingHistory | None = None
        """When set, audible windows' embeddings are kept for enrollment from a stream's time range."""
        self.embedder = embedder
        self.bank = bank
        self.detector = Detector(detector, hop_s)
        self.windows = 0
        self.on_scores: Callable[[list[str], np.ndarray], None] | None = None

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        """A new model (reload) brings its own front end: no frames are shared across models, and the embedding
        history of the old one is forgotten."""
        self._embedder = embedder
        if self.history is not None:
            self.history.clear()
        self.scorer = DeviceScorer(embedder, self.max_batch)
        self.frames = SharedFrames(embedder.features, timed=lambda stage: self.timed(stage))

    def score(self, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
        """[B, S] bank scores (speakers in `bank.names` order, each window's score shift added) of the windows
        among `items`, and their [B] levels in dBFS (RMS); the other items tell the shared frames where
        streams break."""
        windows = [item for item in items if isinstance(item, Window)]
        if not windows:
            for item in items:
                if isinstance(item, StreamBreak):
                    self.frames.forget(item.stream)
            return np.zeros((0, len(self.bank)), dtype=np.float32), np.zeros(0, dtype=np.float32)
        with self.timed("level"):
            levels = window_levels(windows)
        with torch.inference_mode():
            features = self.frames.features(items)
        return self.score_features(windows, features, levels)

    def score_features(self, windows: Sequence[Window], features: torch.Tensor,
                       levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`score` of windows whose [B, n_mels, frames] features and [B] levels were made already (by a
        stream shard or scan worker: the windows need only their times here)."""
        if not windows:
            return np.zeros((0, len(self.bank)), dtype=np.float32), levels
        with torch.inference_mode():
            with self.timed("embed"):
                embeddings, shifts = self.scorer.embed(features)
            if self.history is not None:
                audible = np.flatnonzero(levels >= (self.detector.config.min_level_dbfs or -np.inf))
                self.history.record([windows[i] for i in audible], embeddings[torch.from_numpy(audible)])
            with self.timed("match"):
                return self.scorer.match(embeddings, shifts, self.bank), levels

    def process(self, items: Sequence[Item]) -> list[Event]:
        return self.decide(items, *self.score(items))

    def decide(self, items: Sequence[Item], scores: np.ndarray, levels: np.ndarray) -> list[Event]:
        """The detector's walk over `items` in order, with the windows' `score` results."""
        windows = [item for item in items if isinstance(item, Window)]
        positive = positive_windows(scores, self.bank.thresholds().numpy(), levels, self.detector.config)
        names = self.bank.names
        self.windows += len(windows)
        if self.on_scores is not None:
            self.on_scores(names, scores)
        events: list[Event] = []
        row = 0
        with self.timed("detect"):
            for item in items:
                if isinstance(item, Window):
                    events += self.detector.observe(item, names, scores[row], positive[row])
                    row += 1
                elif isinstance(item, SourceNotice):
                    events.append(Event(type="status", stream=item.stream, start=round(item.time, 6),
                                        end=round(item.time, 6), wall_start=item.wall, reason=f"source_{item.status}"))
                else:
                    events += self.close_stream(item)
        return events

    def close_stream(self, item: StreamBreak) -> list[Event]:
        events = self.detector.close_stream(item.stream)
        kind = "gap" if item.is_gap else "status"
        events.append(
            Event(type=kind, stream=item.stream, start=round(item.start, 6), end=round(item.end, 6),
                  wall_start=item.wall_start, reason=item.reason)
        )
        return events

    def swap_bank(self, bank: SpeakerBank) -> list[Event]:
        """Use `bank` from the next tick on; segments of speakers it no longer has are ended."""
        gone = set(self.bank.names) - set(bank.names)
        self.bank = bank
        return [event for name in sorted(gone) for event in self.detector.close_speaker(name)]

    def close_all(self) -> list[Event]:
        return self.detector.close_all()
