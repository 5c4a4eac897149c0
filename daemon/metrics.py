"""Prometheus metrics of the core, served over HTTP on loopback.

Per-window numbers (scores) are aggregated with numpy per tick and exposed by a custom collector,
so a thousand streams × a hundred speakers cost a few array operations, not 10⁵ `observe` calls.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_LOG = logging.getLogger(__name__)
SCORE_BUCKETS = np.round(np.arange(0.0, 1.0001, 0.1), 2)
"""Upper bounds; negative scores count in the first bucket (Prometheus drops sums of negative buckets)."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ScoreHistograms(Collector):
    """Per-speaker histograms of window scores, accumulated in bulk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}

    def observe(self, speakers: list[str], scores: np.ndarray) -> None:
        """`scores` [B, S] in `speakers` order."""
        if scores.size == 0:
            return
        # bucket i counts scores <= SCORE_BUCKETS[i]; the last bucket is +Inf
        index = np.searchsorted(SCORE_BUCKETS, scores, side="left")  # [B, S]
        with self._lock:
            for column, name in enumerate(speakers):
                counts = np.bincount(index[:, column], minlength=len(SCORE_BUCKETS) + 1)
                self._counts[name] = self._counts.get(name, 0) + counts
                self._sums[name] = self._sums.get(name, 0.0) + float(scores[:, column].sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily("voicewatch_window_score", "Window scores per enrolled speaker",
                                       labels=["speaker"])
        with self._lock:
            for name, counts in self._counts.items():
                cumulative = np.cumsum(counts)
                buckets = [(f"{b:g}", float(c)) for b, c in zip(SCORE_BUCKETS, cumulative[:-1], strict=True)]
                buckets.append(("+Inf", float(cumulative[-1])))
                family.add_metric([name], buckets, self._sums[name])
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("voicewatch_frames", "Ingest frames accepted", registry=r)
        self.bad_frames = Counter("voicewatch_bad_frames", "Ingest frames dropped, by reason", ["reason"], registry=r)
        self.windows = Counter("voicewatch_windows", "Windows embedded and scored", registry=r)
        self.windows_dropped = Counter("voicewatch_windows_dropped", "Windows dropped because the core fell behind",
                                       registry=r)
        self.events = Counter("voicewatch_events", "Events published, by type", ["type"], registry=r)
        self.batch = Histogram("voicewatch_batch_windows", "Windows per tick",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096), registry=r)
        self.stage = Histogram("voicewatch_stage_seconds", "Time per tick spent in each stage", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.tick = Histogram("voicewatch_tick_seconds", "Frame drain to events published, per tick",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("voicewatch_end_to_end_latency_seconds",
                                 "Frames drained from the socket → their events published, per tick with windows",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.streams = Gauge("voicewatch_streams", "Live streams", registry=r)
        self.stream_rtf = Gauge("voicewatch_stream_real_time_factor", "Audio seconds received per wall second",
                                ["stream"], registry=r)
        self.stream_idle = Gauge("voicewatch_stream_idle_seconds", "Seconds since the stream's last frame",
                                 ["stream"], registry=r)
        self.unhealthy = Gauge("voicewatch_streams_unhealthy", "Streams currently idle or silent", ["condition"],
                               registry=r)
        self.bank_speakers = Gauge("voicewatch_bank_speakers", "Speakers in the bank", registry=r)
        self.bank_exemplars = Gauge("voicewatch_bank_exemplars", "Exemplars in the bank", registry=r)
        self.scores = ScoreHistograms()
        r.register(self.scores)
        self._known_frames = 0
        self._known_bad: dict[str, int] = {}
        self.stage_seconds: collections.Counter[str] = collections.Counter()
        """Running totals of `stage` (for the control `status` and the benchmark)."""
        self.batches = 0
        """Ticks that scored at least one window."""

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.stage.labels(stage).observe(spent)
            self.stage_seconds[stage] += spent

    def count_frames(self, accepted: int, dropped: dict[str, int]) -> None:
        """Bring the frame counters up to the ingest's running totals."""
        self.frames.inc(accepted - self._known_frames)
        self._known_frames = accepted
        for reason, total in dropped.items():
            delta = total - self._known_bad.get(reason, 0)
            if delta:
                self.bad_frames.labels(reason).inc(delta)
                self._known_bad[reason] = total

    def serve(self, address: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port (useful with port 0)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        bound = int(server.server_port)
        _LOG.info("metrics on http://%s:%d/metrics", address, bound)
        return bound
