"""The long-running core: one loop that drains ingest, runs a batched tick, publishes events.

All sockets but the stream shards' front are owned by the thread that calls `Core.run`. Each tick
reads every frame (or, with stream shards, every batch of features) already waiting, up to a bound, so
the batch grows with the load: one stream → small batches and low latency; a thousand streams → large
batches and high throughput. What the core reports of itself is in corereport.py, reload in reload.py.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch
import zmq

from voicewatch.allocator import TRIM_EVERY_S, release_free_memory
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.control import TRANSPORT_FACTOR, Controller
from voicewatch.corereport import CoreReport
from voicewatch.embedder import Embedder
from voicewatch.epg import Epg
from voicewatch.eventlog import EventLog
from voicewatch.events import EventPublisher
from voicewatch.evidence import EvidenceRecorder
from voicewatch.history import EmbeddingHistory
from voicewatch.ingest import Ingest
from voicewatch.metrics import Metrics
from voicewatch.overload import LoadShedder
from voicewatch.pipeline import Pipeline
from voicewatch.protocol import Event
from voicewatch.reload import Loader, reload
from voicewatch.security import CurveServer, is_local
from voicewatch.shards import Shards
from voicewatch.systemd import Notifier
from voicewatch.windows import Window

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class _Io:
    """What `run` opens and must close: sockets, the event log, the publisher."""

    pull: zmq.Socket
    """The public ingest socket: polled by the loop, or routed to the stream shards by their front."""
    pub: zmq.Socket
    control: zmq.Socket | None
    poller: zmq.Poller
    log: EventLog | None
    publisher: EventPublisher


class Core:
    def __init__(self, config: Config, embedder: Embedder, bank: SpeakerBank, notifier: Notifier | None = None,
                 loader: Loader | None = None) -> None:
        self.config = config
        self.loader = loader
        self.reload_requested = threading.Event()
        """Set (by SIGHUP or a control request) to reload config, model and bank at the next tick."""
        self.ingest = Ingest(config.ingest, config.windows)
        self.pipeline = Pipeline(embedder, bank, config.detector, config.windows.hop_s,
                                 config.processing.max_batch_windows)
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.pipeline.timed = self.metrics.timed
        self.pipeline.on_scores = self.metrics.scores.observe
        if config.control.history_s > 0:
            self.pipeline.history = EmbeddingHistory(config.control.history_s, config.windows.hop_s,
                                                     config.ingest.max_streams)
        self.controller = Controller(self, config.control.max_request_bytes)
        self.epg = Epg(config.epg.xmltv, config.epg.channels, config.epg.refresh_s) if config.epg.xmltv else None
        self.shedder = LoadShedder(config.processing.max_lag_s)
        self.context = zmq.Context.instance()
        self.shards = (Shards(config, embedder.settings, self.context) if config.processing.workers > 1 else None)
        """Stream-shard workers (processing.workers > 1): they take in frames and make features; the core scores."""
        if config.processing.threads:
            torch.set_num_threads(config.processing.threads)
        elif self.shards is not None and embedder.device.type == "cpu":  # leave the workers their cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - self.shards.count))
        self.report = CoreReport(self)
        """Heartbeats, health notices, systemd STATUS and gauges, read from the typed stream view."""
        self.scorer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
        """Features, embedding and matching of one batch run here (torch releases the GIL) while the
        main thread takes in the next batch's frames; the detector and publishing stay on the main thread."""
        self._scoring: tuple[list, concurrent.futures.Future, float] | None = None
        self.evidence = (EvidenceRecorder(config.clips, config.windows, self.pipeline.detector.open_starts,
                                          config.ingest.max_streams) if config.clips.path else None)
        """Cuts each segment's clip (clips.path); sees every tick's windows and every event before it is published."""
        if self.evidence is not None:
            self.metrics.registry.register(self.evidence)

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; then end open segments, flush, close."""
        with self._open() as io:
            if self.epg is not None:
                self.epg.start()
            if self.config.metrics.port is not None:
                self.metrics.serve(self.config.metrics.address, self.config.metrics.port)
            self.report.bank_metrics()
            _LOG.info("core ready: ingest %s, events %s, %d speakers, model %s on %s",
                      self.config.ingest.endpoint, self.config.events.endpoint, len(self.pipeline.bank),
                      self.pipeline.embedder.model_id, self.pipeline.embedder.device)
            self.notifier.ready(self.report.status_line())
            started = time.monotonic()
            heartbeat = Every(self.config.events.heartbeat_s)
            watchdog = Every(self.notifier.watchdog_interval)
            prune = Every(3600.0 if io.log is not None else None, first=0.0)
            trim = Every(TRIM_EVERY_S)
            try:
                while not stop.is_set():
                    self._step(io)
                    if heartbeat.due():
                        self._finish(io)  # health notices come after the events of frames already taken in
                        self._heartbeat(io, round(time.monotonic() - started, 3))
                    if watchdog.due():  # from the loop itself: a stuck pipeline stops the pings
                        self.notifier.watchdog()
                    if trim.due():
                        release_free_memory()
                    if prune.due() and io.log is not None and (pruned := io.log.prune()):
                        _LOG.info("pruned %d events older than the retention period from the log", pruned)
            finally:
                self._finish(io)
                self.scorer.shutdown()
                self.notifier.stopping()
                if self.epg is not None:
                    self.epg.stop()
                closed = self._publish(io, self.pipeline.close_all())
                if self.evidence is not None:
                    self.evidence.close()
                _LOG.info("core stopping: ended %d open segments; %d frames, %d windows, %d events, bad frames %s",
                          len(closed), self.intake.frames, self.pipeline.windows, io.publisher.published,
                          dict(self.intake.dropped) or "none")

    @contextlib.contextmanager
    def _open(self) -> Iterator[_Io]:
        pull = self.context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, self.config.ingest.receive_hwm)
        # Transport-level guard far above the per-frame limit: protects memory from a rogue peer,
        # while ordinary oversize frames still arrive and are counted as `too_large`.
        pull.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.ingest.max_frame_bytes)
        pub = self.context.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        control = self.context.socket(zmq.REP) if self.config.control.endpoint else None
        if control is not None:
            # far above the request limit, so that an oversized request still gets its error reply
            control.setsockopt(zmq.MAXMSGSIZE, TRANSPORT_FACTOR * self.config.control.max_request_bytes)
        log = None
        security = self.config.security
        curve = CurveServer(self.context, security.secret_key, security.authorized_keys) if security.curve else None
        try:
            poller = zmq.Poller()
            for socket, endpoint in ((pull, self.config.ingest.endpoint), (pub, self.config.events.endpoint),
                                     (control, self.config.control.endpoint)):
                if socket is None or endpoint is None:
                    continue
                if curve is not None:
                    curve.secure(socket)
                elif not is_local(endpoint):
                    _LOG.warning("%s is reachable from other machines without CURVE: set security.curve", endpoint)
                socket.bind(endpoint)
                if socket is not pub and not (socket is pull and self.shards is not None):
                    poller.register(socket, zmq.POLLIN)
            if self.shards is not None:
                self.shards.start_front(pull)
                poller.register(self.shards.batches, zmq.POLLIN)
            events = self.config.events
            log = EventLog(events.log_path, events.retention_days) if events.log_path else None
            yield _Io(pull, pub, control, poller, log, EventPublisher(pub, log))
        finally:
            if self.shards is not None:
                self.shards.close()  # the front first: it owns `pull` while it runs
            pull.close(linger=0)
            pub.close(linger=2000)  # let subscribers get the final `end` events
            if control is not None:
                control.close(linger=0)
            if log is not None:
                log.close()
            if curve is not None:
                curve.stop()

    def _step(self, io: _Io) -> None:
        ready = dict(io.poller.poll(0 if self._scoring is not None else 100))
        source = io.pull if self.shards is None else self.shards.batches
        if source in ready:
            if self.shards is None:
                self._tick(io)
            else:
                self._tick_shards(io)
        else:
            self._finish(io)  # nothing new to overlap with: publish the batch in flight now
        if ready.keys() - {source}:
            self._finish(io)
        if self.shards is not None and (lost := self.shards.restart_dead()):
            self._finish(io)
            self._publish(io, self.pipeline.decide(lost, np.zeros((0, len(self.pipeline.bank)), dtype=np.float32),
                                                   np.zeros(0, dtype=np.float32)))
        if io.control is not None and io.control in ready:
            io.control.send(self.controller.handle(io.control.recv_multipart()))
            self._publish(io, self.controller.pending_events)
            self.controller.pending_events = []
            self.report.bank_metrics()
        if self.reload_requested.is_set():
            self._finish(io)
            self.reload_requested.clear()
            if self.loader is not None:
                self._publish(io, reload(self, self.loader))
            self.report.bank_metrics()

    def _tick(self, io: _Io) -> None:
        """Drain waiting frames until the batch is full, then hand it to the scoring thread and decide
        on the previous batch. What stays in the socket waits for the next tick (bounded by the
        high-water mark), so memory per tick is bounded too."""
        started = time.perf_counter()
        items: list = []
        ready = 0
        dropped_before = sum(self.shedder.dropped.values())
        with self.metrics.timed("ingest"):
            for _ in range(self.config.processing.max_messages_per_tick):
                try:
                    parts = io.pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                kept = self.shedder.shed(self.ingest.accept([part.buffer for part in parts]), time.time())
                items += kept
                ready += sum(isinstance(item, Window) for item in kept)
                if ready >= self.config.processing.max_batch_windows:
                    break
            items += self.shedder.flush()
        self.metrics.windows_dropped.inc(sum(self.shedder.dropped.values()) - dropped_before)
        self._finish(io)
        if items:
            self._scoring = (items, self.scorer.submit(self.pipeline.score, items), started)
        self.metrics.tick.observe(time.perf_counter() - started)

    def _tick_shards(self, io: _Io) -> None:
        """`_tick` with the stream shards: their batches' features go to the scoring thread as they came."""
        started = time.perf_counter()
        assert self.shards is not None
        dropped_before = sum(self.shards.shed.values())
        with self.metrics.timed("gather"):
            batch = self.shards.take(self.config.processing.max_batch_windows)
        self.metrics.windows_dropped.inc(sum(self.shards.shed.values()) - dropped_before)
        self._finish(io)
        if batch.items:
            windows = [item for item in batch.items if isinstance(item, Window)]
            scoring = self.scorer.submit(self.pipeline.score_features, windows, torch.from_numpy(batch.features),
                                         batch.levels)
            self._scoring = (batch.items, scoring, started)
        self.metrics.tick.observe(time.perf_counter() - started)

    def _finish(self, io: _Io) -> None:
        """Wait for the batch being scored, if any; run the detector over it and publish its events.
        Everything that reads or swaps the pipeline's state calls this first."""
        if self._scoring is None:
            return
        items, scoring, started = self._scoring
        self._scoring = None
        windows_before = self.pipeline.windows
        events = self.pipeline.decide(items, *scoring.result())
        if self.evidence is not None:
            self.evidence.listen(items)
        with self.metrics.timed("publish"):
            self._publish(io, events)
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.batch.observe(self.pipeline.windows - windows_before)
        self.metrics.batches += self.pipeline.windows > windows_before
        self.metrics.windows.inc(self.pipeline.windows - windows_before)

    def _publish(self, io: _Io, events: list[Event]) -> list[Event]:
        if self.evidence is not None:
            events = self.evidence.annotate(events)
        if self.epg is not None:
            events = [self._with_programme(e) for e in events]
        published = io.publisher.publish(events)
        for event in published:
            self.metrics.events.labels(event.type).inc()
        return published

    def _with_programme(self, event: Event) -> Event:
        assert self.epg is not None
        programme = self.epg.programme(event.stream, event.wall_start) if event.speaker else None
        return dataclasses.replace(event, programme=programme.to_dict()) if programme else event

    def _heartbeat(self, io: _Io, uptime: float) -> None:
        io.publisher.announce(self.report.heartbeat(uptime))
        self.notifier.status(self.report.status_line())
        self._publish(io, self.report.check())

    @property
    def intake(self) -> Ingest | Shards:
        """Where the streams' state lives: the core's own ingest, or its stream shards (the same read-only view)."""
        return self.ingest if self.shards is None else self.shards

    def windows_dropped(self) -> collections.Counter[str]:
        """Windows dropped as too late, per stream."""
        return self.shedder.dropped if self.shards is None else self.shards.shed

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage so far: the core's own, plus its shards' (summed over workers)."""
        if self.shards is None:
            return dict(self.metrics.stage_seconds)
        return dict(self.metrics.stage_seconds + self.shards.stage_seconds())

class Every:
    """True from `due()` once per `interval` seconds (never when the interval is None)."""

    def __init__(self, interval: float | None, first: float | None = None) -> None:
        self.interval = interval
        self._next = time.monotonic() + (interval if first is None else first) if interval else float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + (self.interval or 0.0)
        return True
