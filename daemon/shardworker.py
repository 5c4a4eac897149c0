"""One stream shard: a worker process that owns the streams routed to it, from frames to log-MEL features.

It takes its streams' frames (zero-copy) from the core's front over ipc://, runs the same Ingest, load
shedding and shared-frame features as the single-process core on one CPU thread, and pushes each batch
to the core's scorer in the batchwire format. Every `STATS_S` it also pushes its counters and a
StreamState row per stream, which is all the core knows of its streams between windows.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Iterator

import torch
import zmq

from voicewatch import batchwire
from voicewatch.allocator import TRIM_EVERY_S, release_free_memory, resident_bytes
from voicewatch.config import Config
from voicewatch.features import FeatureExtractor, FeatureSettings
from voicewatch.ingest import Ingest
from voicewatch.overload import LoadShedder
from voicewatch.sharedframes import SharedFrames
from voicewatch.windows import Item, Window

STATS_S = 0.2
"""How often a worker reports its counters and streams (and checks that the core is still there)."""


@dataclasses.dataclass
class _Stages:
    """Running seconds per stage, reported to the core."""

    seconds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started


def run_shard(index: int, frames_endpoint: str, batches_endpoint: str, config: Config,
              settings: FeatureSettings, parent: int) -> None:
    """A worker's whole life: until the core goes away (or kills it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the core decides when its workers stop
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s (%(processName)s): %(message)s")
    torch.set_num_threads(1)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, config.ingest.receive_hwm)
    pull.connect(frames_endpoint)
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 4)
    push.connect(batches_endpoint)
    shard = _Shard(index, config)
    shard.frames = SharedFrames(FeatureExtractor(settings), timed=shard.stages.timed)
    push.send_multipart([json.dumps({"hello": index, "pid": os.getpid()}).encode()])
    next_stats = next_trim = time.monotonic()
    try:
        while os.getppid() == parent:
            if pull.poll(STATS_S * 1000):
                items = shard.drain(pull)
                if items:
                    push.send_multipart(batchwire.encode(items, *batchwire.make(shard.frames, items), worker=index),
                                       copy=False)
            if time.monotonic() >= next_stats:
                push.send_multipart([json.dumps({"worker": index, "stats": shard.stats()}).encode()])
                next_stats = time.monotonic() + STATS_S
            if time.monotonic() >= next_trim:  # as the core does: each tick's freed batch back to the system
                release_free_memory()
                next_trim = time.monotonic() + TRIM_EVERY_S
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        context.term()


class _Shard:
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        self.processing = config.processing
        self.ingest = Ingest(config.ingest, config.windows)
        self.shedder = LoadShedder(config.processing.max_lag_s)
        self.stages = _Stages()
        self.windows = 0
        self.frames: SharedFrames

    def drain(self, pull: zmq.Socket) -> list[Item]:
        """The items of the frames waiting, up to a batch of windows (what stays waits for the next call)."""
        items: list[Item] = []
        ready = 0
        with self.stages.timed("ingest"):
            now = time.time()
            for _ in range(self.processing.max_messages_per_tick):
                try:
                    parts = pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                kept = self.shedder.shed(self.ingest.accept([part.buffer for part in parts]), now)
                items += kept
                made = sum(isinstance(item, Window) for item in kept)
                ready += made
                self.windows += made
                if ready >= self.processing.max_batch_windows:
                    break
            items += self.shedder.flush()
        return items

    def stats(self) -> dict:
        return {"frames": self.ingest.frames, "dropped": dict(self.ingest.dropped),
                "shed": dict(self.shedder.dropped), "stages": dict(self.stages.seconds),
                "windows": self.windows,
                "memory": {"window_buffers": sum(b.nbytes for b in self.ingest.buffers.values()), "rss": resident_bytes()},
                "streams": [dataclasses.astuple(state) for state in self.ingest.streams()]}
