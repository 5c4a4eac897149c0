"""The long-running core: one loop that drains ingest, runs a batched tick, publishes events.

All sockets are owned by the thread that calls `Core.run`. Each tick reads every frame already
waiting (up to a bound), so the batch grows with the load: one stream → small batches and low
latency; a thousand streams → large batches and high throughput.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

import torch
import zmq

from voicewatch.allocator import release_free_memory
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.control import TRANSPORT_FACTOR, Controller
from voicewatch.embedder import Embedder
from voicewatch.epg import Epg
from voicewatch.eventlog import EventLog
from voicewatch.events import EventPublisher
from voicewatch.evidence import EvidenceRecorder
from voicewatch.health import HealthWatch
from voicewatch.history import EmbeddingHistory
from voicewatch.ingest import Ingest
from voicewatch.metrics import Metrics
from voicewatch.overload import LoadShedder
from voicewatch.pipeline import Pipeline
from voicewatch.protocol import Event
from voicewatch.security import CurveServer, is_local
from voicewatch.shipped import DEMO_BANK
from voicewatch.systemd import Notifier
from voicewatch.windows import Window

_LOG = logging.getLogger(__name__)
CORE_STREAM = "_core"
"""Stream name of the core's own `status` heartbeats."""
RESTART_ONLY = ("ingest", "events", "control", "metrics", "health", "security", "epg", "windows", "processing",
                "clips")
"""Config sections a reload cannot change (sockets and buffers are built from them)."""
TRIM_EVERY_S = 10.0
"""How often the core hands the heap's free pages back to the system (allocator.py)."""

Loader = Callable[[], tuple[Config, Embedder, SpeakerBank]]
"""Builds the next (config, model, bank) on reload; raises when any of them is invalid."""


def load_model_and_bank(config: Config) -> tuple[Embedder, SpeakerBank]:
    """Load (and cross-check) the embedder and bank a config names; raises on any problem."""
    embedder = Embedder.load(config.model.path, device=config.model.device)
    bank = SpeakerBank.load(config.bank.path or DEMO_BANK, embedder_id=embedder.model_id)
    if config.bank.threshold is not None:
        bank.default_threshold = config.bank.threshold
    return embedder, bank


@dataclasses.dataclass
class _Io:
    """What `run` opens and must close: sockets, the event log, the publisher."""

    pull: zmq.Socket
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
        self.health = HealthWatch(config.health.idle_s, config.health.silence_s)
        self.context = zmq.Context.instance()
        if config.processing.threads:
            torch.set_num_threads(config.processing.threads)
        self._last_status = (time.monotonic(), 0)
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
            self._bank_metrics()
            _LOG.info("core ready: ingest %s, events %s, %d speakers, model %s on %s",
                      self.config.ingest.endpoint, self.config.events.endpoint, len(self.pipeline.bank),
                      self.pipeline.embedder.model_id, self.pipeline.embedder.device)
            self.notifier.ready(self._status())
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
                          len(closed), self.ingest.frames, self.pipeline.windows, io.publisher.published,
                          dict(self.ingest.dropped) or "none")

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
                if socket is not pub:
                    poller.register(socket, zmq.POLLIN)
            events = self.config.events
            log = EventLog(events.log_path, events.retention_days) if events.log_path else None
            yield _Io(pull, pub, control, poller, log, EventPublisher(pub, log))
        finally:
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
        if io.pull in ready:
            self._tick(io)
        else:
            self._finish(io)  # nothing new to overlap with: publish the batch in flight now
        if ready.keys() - {io.pull}:
            self._finish(io)
        if io.control is not None and io.control in ready:
            io.control.send(self.controller.handle(io.control.recv_multipart()))
            self._publish(io, self.controller.pending_events)
            self.controller.pending_events = []
            self._bank_metrics()
        if self.reload_requested.is_set():
            self._finish(io)
            self.reload_requested.clear()
            self._publish(io, self._reload())
            self._bank_metrics()

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
        io.publisher.announce(Event(type="status", stream=CORE_STREAM, start=uptime, end=uptime, reason="heartbeat"))
        self.notifier.status(self._status())
        streams, now, metrics = self.ingest.streams(), time.monotonic(), self.metrics
        self._publish(io, self.health.check(streams, now))
        for condition in ("idle", "silent"):
            metrics.unhealthy.labels(condition).set(sum(c == condition for c in self.health.reported.values()))
        metrics.count_frames(self.ingest.frames, self.ingest.dropped)
        metrics.streams.set(len(streams))
        for stream in streams:
            if (factor := stream.real_time_factor(now)) is not None:
                metrics.stream_rtf.labels(stream.name).set(factor)
            metrics.stream_idle.labels(stream.name).set(now - stream.last_seen)

    def _bank_metrics(self) -> None:
        bank = self.pipeline.bank
        self.metrics.bank_speakers.set(len(bank))
        self.metrics.bank_exemplars.set(sum(len(bank.exemplars(n)) for n in bank.names))

    def _reload(self) -> list[Event]:
        """Swap in a new model and bank (and detector settings) atomically, or keep the old ones."""
        if self.loader is None:
            return []
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            config, embedder, bank = self.loader()
        except Exception as exc:  # any failure to build the new state keeps the old one serving
            _LOG.error("reload refused, keeping the running config, model and bank: %s", exc)
            self.notifier.ready(self._status())
            return []
        for section in RESTART_ONLY:
            if getattr(config, section) != getattr(self.config, section):
                _LOG.warning("reload: changes under %r take effect only after a restart", section)
        self.config = dataclasses.replace(config, **{name: getattr(self.config, name) for name in RESTART_ONLY})
        self.pipeline.detector.config = config.detector
        self.pipeline.embedder = embedder
        ended = self.pipeline.swap_bank(bank)
        _LOG.info("reloaded: model %s, %d speakers", embedder.model_id, len(bank))
        self.notifier.ready(self._status())
        return ended

    def _status(self) -> str:
        """systemd's one-line STATUS: streams, throughput since the last call, worst idle stream, drops."""
        now, windows = time.monotonic(), self.pipeline.windows
        last_time, last_windows = self._last_status
        self._last_status = (now, windows)
        rate = (windows - last_windows) / (now - last_time) if now > last_time else 0.0
        streams = self.ingest.streams()
        idle = max((now - stream.last_seen for stream in streams), default=0.0)
        bad, shed = sum(self.ingest.dropped.values()), sum(self.shedder.dropped.values())
        return (f"{len(streams)} streams, {rate:.0f} windows/s, max frame age {idle:.1f} s, "
                f"{bad} bad frames, {shed} windows dropped")


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
