"""The long-running core: one loop that drains ingest, runs a batched tick, publishes events.

All sockets are owned by the thread that calls `Core.run`. Each tick reads every frame already
waiting (up to a bound), so the batch grows with the load: one stream → small batches and low
latency; a thousand streams → large batches and high throughput.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import zmq

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.control import Controller
from voicewatch.embedder import Embedder
from voicewatch.eventlog import EventLog
from voicewatch.events import EventPublisher
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.protocol import Event
from voicewatch.shipped import DEMO_BANK
from voicewatch.systemd import Notifier

_LOG = logging.getLogger(__name__)
CORE_STREAM = "_core"
"""Stream name of the core's own `status` heartbeats."""


def load_model_and_bank(config: Config) -> tuple[Embedder, SpeakerBank]:
    """Load (and cross-check) the embedder and bank a config names; raises on any problem."""
    embedder = Embedder.load(config.model.path, device=config.model.device)
    bank = SpeakerBank.load(config.bank.path or DEMO_BANK, embedder_id=embedder.model_id)
    if config.bank.threshold is not None:
        bank.default_threshold = config.bank.threshold
    return embedder, bank


Loader = Callable[[], tuple[Config, Embedder, SpeakerBank]]
"""Builds the next (config, model, bank) on reload; raises when any of them is invalid."""


class Core:
    def __init__(self, config: Config, embedder: Embedder, bank: SpeakerBank, notifier: Notifier | None = None,
                 loader: Loader | None = None) -> None:
        self.config = config
        self.loader = loader
        self.reload_requested = threading.Event()
        """Set (by SIGHUP or a control request) to reload config, model and bank at the next tick."""
        self.ingest = Ingest(config.ingest, config.windows)
        self.pipeline = Pipeline(embedder, bank, config.detector, config.processing.max_batch_windows)
        self.notifier = notifier or Notifier()
        self.context = zmq.Context.instance()
        self.ticks = 0

    def _bind_control(self) -> zmq.Socket | None:
        if self.config.control.endpoint is None:
            return None
        rep = self.context.socket(zmq.REP)
        rep.setsockopt(zmq.MAXMSGSIZE, self.config.control.max_request_bytes)
        rep.bind(self.config.control.endpoint)
        return rep

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket]:
        pull = self.context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, self.config.ingest.receive_hwm)
        # Transport-level guard far above the per-frame limit: protects memory from a rogue peer,
        # while ordinary oversize frames still arrive and are counted as `too_large`.
        pull.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.ingest.max_frame_bytes)
        pull.bind(self.config.ingest.endpoint)
        pub = self.context.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        pub.bind(self.config.events.endpoint)
        return pull, pub

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; reload config, model and bank whenever `reload_requested` is set."""
        pull, pub = self._bind()
        control = self._bind_control()
        controller = Controller(self, self.config.control.max_request_bytes)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        if control is not None:
            poller.register(control, zmq.POLLIN)
        events = self.config.events
        log = EventLog(events.log_path, events.retention_days) if events.log_path else None
        publisher = EventPublisher(pub, log)
        _LOG.info("core ready: ingest %s, events %s, %d speakers, model %s on %s",
                  self.config.ingest.endpoint, events.endpoint, len(self.pipeline.bank),
                  self.pipeline.embedder.model_id, self.pipeline.embedder.device)
        self.notifier.ready(self._status())
        started = time.monotonic()
        heartbeat = Every(events.heartbeat_s)
        watchdog = Every(self.notifier.watchdog_interval)
        prune = Every(3600.0 if log is not None else None, first=0.0)
        try:
            while not stop.is_set():
                ready = dict(poller.poll(100))
                if pull in ready:
                    self._tick(pull, publisher)
                if control is not None and control in ready:
                    control.send(controller.handle(control.recv_multipart()))
                    publisher.publish(controller.pending_events)
                    controller.pending_events = []
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    publisher.publish(self._reload())
                if heartbeat.due():
                    uptime = round(time.monotonic() - started, 3)
                    publisher.announce(Event(type="status", stream=CORE_STREAM, start=uptime, end=uptime,
                                             reason="heartbeat"))
                    self.notifier.status(self._status())
                if watchdog.due():
                    self.notifier.watchdog()
                if prune.due() and log is not None and (pruned := log.prune()):
                    _LOG.info("pruned %d events older than %s days from the log", pruned, events.retention_days)
        finally:
            self.notifier.stopping()
            closed = publisher.publish(self.pipeline.close_all())
            _LOG.info("core stopping: ended %d open segments; %d frames, %d windows, %d events, dropped %s",
                      len(closed), self.ingest.frames, self.pipeline.windows, publisher.published,
                      dict(self.ingest.dropped) or "none")
            pull.close(linger=0)
            pub.close(linger=2000)
            if control is not None:
                control.close(linger=0)
            if log is not None:
                log.close()

    def _tick(self, pull: zmq.Socket, publisher: EventPublisher) -> None:
        items = []
        for _ in range(self.config.processing.max_messages_per_tick):
            try:
                parts = pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            items += self.ingest.accept([part.buffer for part in parts])
        if items:
            publisher.publish(self.pipeline.process(items))
        self.ticks += 1

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
        fixed = ("ingest", "events", "control", "windows", "processing")
        for section in fixed:
            if getattr(config, section) != getattr(self.config, section):
                _LOG.warning("reload: changes under %r take effect only after a restart", section)
        self.config = dataclasses.replace(config, **{name: getattr(self.config, name) for name in fixed})
        self.pipeline.detector.config = config.detector
        self.pipeline.embedder = embedder
        ended = self.pipeline.swap_bank(bank)
        _LOG.info("reloaded: model %s, %d speakers", embedder.model_id, len(bank))
        self.notifier.ready(self._status())
        return ended

    def _status(self) -> str:
        bad = sum(self.ingest.dropped.values())
        return f"{len(self.ingest.buffers)} streams, {self.pipeline.windows} windows, {bad} bad frames"



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
