"""Stream shards: N worker processes, each owning a share of the streams, between one front and one scorer.

Sources speak the documented protocol to the one ingest endpoint, bound by the core's PULL socket. The
front, a thread of the core that alone uses its sockets, routes each frame by its stream id's CRC-32 to
one worker over an ipc:// PUSH socket. It passes the received ZeroMQ frames on as they are (zero-copy,
the bytes are never parsed there), so a stream stays on one worker for its life and its window state
lives there. Workers (shardworker.py) push batches of features back over one ipc:// PULL socket that
the core's loop polls beside its others; the core scores them all in one batch.

A worker that dies is restarted, no sooner than a second after it started. Its streams get a
`worker_lost` break (a `gap` event at the stream time its last report gave), their frames are dropped
until the new worker is up, and the stream's windows start afresh from its next frame; other streams
never wait on it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import tempfile
import threading
import time
import zlib
from typing import Any

import zmq

from voicewatch import batchwire
from voicewatch.batchwire import Batch
from voicewatch.config import Config
from voicewatch.features import FeatureSettings
from voicewatch.ingest import StreamState
from voicewatch.shardworker import run_shard
from voicewatch.windows import StreamBreak, Window

_LOG = logging.getLogger(__name__)
ROUTE_TABLE_LIMIT = 200_000
"""Stream ids whose shard the front remembers (beyond it the CRC is computed per frame)."""
RESTART_AFTER_S = 1.0
"""A worker is restarted no sooner than this after its predecessor started: one that fails at once does
not spin."""
WAIT_MS = 100
"""How long the front waits on a full worker before it looks again whether it should stop."""


@dataclasses.dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    pid: int | None = None
    """Set by the worker's hello: the process is up and connected."""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Its last report: counters, stage seconds, streams."""
    states: list[StreamState] = dataclasses.field(default_factory=list)
    known: dict[str, tuple[float, float | None]] = dataclasses.field(default_factory=dict)
    """Stream → (stream time, wall time) where its audio was last seen: where its gap begins if the worker dies."""
    windows: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    lost: bool = False
    """It has exited, its streams' gaps are out, and its successor waits for `RESTART_AFTER_S`."""


class Shards:
    """The workers, the front that feeds them, and the read-only view of their streams the core needs."""

    def __init__(self, config: Config, settings: FeatureSettings, context: zmq.Context) -> None:
        self.config = config
        self.settings = settings
        self.count = config.processing.workers
        self.context = context
        self._folder = tempfile.mkdtemp(prefix="voicewatch-shards-")
        self.batches = context.socket(zmq.PULL)
        """Where workers' batches and reports arrive: the core's loop polls it."""
        self.batches.setsockopt(zmq.RCVHWM, 4 * self.count)
        self.batches.bind(f"ipc://{self._folder}/batches")
        self._spawn = multiprocessing.get_context("spawn")  # no torch state forked into the workers
        self.workers = [self._start(index) for index in range(self.count)]
        _LOG.info("stream shards: %d worker processes, frames routed by stream id", self.count)
        self.front = Front(context, [self._endpoint(index) for index in range(self.count)],
                           config.ingest.receive_hwm)
        self.down = self.front.down
        """Workers being restarted: the front drops their frames instead of waiting on them."""
        self.restarts = 0
        self._retired: collections.Counter[str] = collections.Counter()
        """Counters of workers that died, so totals never go back."""

    def start_front(self, pull: zmq.Socket) -> None:
        """Route the public ingest socket's frames from now on; the front thread owns `pull` from here."""
        self.front.start(pull)

    def take(self, max_windows: int) -> Batch:
        """The batches waiting, up to `max_windows` windows, as one; reports and hellos are taken in passing."""
        batches: list[Batch] = []
        windows = 0
        while windows < max_windows:
            try:
                parts = self.batches.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            header, batch = batchwire.decode(parts)
            worker = self.workers[header.get("worker", header.get("hello", -1))]
            if "hello" in header:
                worker.pid = header["pid"]
                self.down.discard(worker.index)
            elif "stats" in header:
                self._report(worker, header["stats"])
            if batch.items:
                self._follow(worker, batch)
                batches.append(batch)
                windows += len(batch.levels)
        return batchwire.join(batches) if batches else Batch([], batchwire.EMPTY, batchwire.EMPTY)

    def restart_dead(self) -> list[StreamBreak]:
        """Restart every worker that has exited; a `worker_lost` break for each stream it held."""
        breaks: list[StreamBreak] = []
        for index, worker in enumerate(self.workers):
            if worker.process.exitcode is None:
                continue
            if not worker.lost:
                _LOG.error("stream shard %d (pid %s) exited with code %s; restarting it, its %d streams get gaps",
                           index, worker.process.pid, worker.process.exitcode, len(worker.known))
                breaks += [StreamBreak(name, "worker_lost", time_, time_, wall) for name, (time_, wall)
                           in sorted(worker.known.items())]
                for name in ("frames", "windows"):
                    self._retired[name] += worker.stats.get(name, 0)
                for table in ("dropped", "shed", "stages"):
                    for key, value in worker.stats.get(table, {}).items():
                        self._retired[f"{table}.{key}"] += value
                worker.lost = True
                worker.known, worker.states, worker.stats = {}, [], {}
                self.down.add(index)
            if time.monotonic() - worker.started >= RESTART_AFTER_S:
                self.restarts += 1
                self.workers[index] = self._start(index)
        return breaks

    def restart_all(self, settings: FeatureSettings) -> None:
        """Workers make features with `settings` from now on (a reload brought a model with another front end)."""
        self.settings = settings
        for worker in self.workers:
            worker.process.kill()

    # -- the view the core's status, health and metrics read ---------------------------------------
    def streams(self) -> list[StreamState]:
        return [state for worker in self.workers for state in worker.states]

    @property
    def frames(self) -> int:
        return self._retired["frames"] + sum(worker.stats.get("frames", 0) for worker in self.workers)

    @property
    def dropped(self) -> collections.Counter[str]:
        """Bad frames by reason, over all workers."""
        return self._sum("dropped")

    @property
    def shed(self) -> collections.Counter[str]:
        """Windows dropped as too late, per stream, over all workers."""
        return self._sum("shed")

    def stage_seconds(self) -> collections.Counter[str]:
        """Seconds spent per stage (ingest, level, resample, log_mel) over all workers."""
        return self._sum("stages")

    def describe(self) -> list[dict[str, Any]]:
        """Each worker for the control `status`: pid, streams, frames, windows and stage seconds."""
        return [{"worker": worker.index, "pid": worker.pid, "streams": sorted(state.name for state in worker.states),
                 "frames": worker.stats.get("frames", 0), "windows": worker.windows,
                 "stage_seconds": {k: round(v, 6) for k, v in worker.stats.get("stages", {}).items()}}
                for worker in self.workers]

    def memory(self) -> dict[str, int]:
        """Bytes the workers hold, by their last reports: window buffers and resident sets, summed."""
        return {name: sum(worker.stats.get("memory", {}).get(name, 0) for worker in self.workers)
                for name in ("window_buffers", "rss")}

    def close(self) -> None:
        self.front.stop()
        for worker in self.workers:
            worker.process.terminate()
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.exitcode is None:
                worker.process.kill()
        self.batches.close(linger=0)
        shutil.rmtree(self._folder, ignore_errors=True)

    # -- inside --------------------------------------------------------------------------------------
    def _endpoint(self, index: int) -> str:
        return f"ipc://{self._folder}/shard-{index}"

    def _start(self, index: int) -> _Worker:
        process = self._spawn.Process(target=run_shard, name=f"voicewatch-shard-{index}", daemon=True,
                                      args=(index, self._endpoint(index), f"ipc://{self._folder}/batches",
                                            self.config, self.settings, os.getpid()))
        process.start()
        return _Worker(index, process)

    def _report(self, worker: _Worker, stats: dict[str, Any]) -> None:
        worker.stats = stats
        worker.states = [StreamState(*row) for row in stats["streams"]]
        worker.known = {state.name: (state.time, None if state.origin_wall is None else
                                     state.origin_wall + state.audio_s) for state in worker.states}

    def _follow(self, worker: _Worker, batch: Batch) -> None:
        for item in batch.items:
            if isinstance(item, Window):
                worker.known[item.stream] = (item.end, None if item.wall_start is None else
                                             item.wall_start + item.end - item.start)
            elif isinstance(item, StreamBreak) and not item.is_gap:
                worker.known.pop(item.stream, None)
        worker.windows += len(batch.levels)

    def _sum(self, table: str) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter(
            {key.split(".", 1)[1]: value for key, value in self._retired.items() if key.startswith(table + ".")})
        for worker in self.workers:
            total.update(worker.stats.get(table, {}))
        return total


class Front:
    """Each frame of the public ingest socket to its stream's worker, as received, on a thread of its own."""

    def __init__(self, context: zmq.Context, endpoints: list[str], hwm: int) -> None:
        self.context = context
        self.endpoints = endpoints
        self.hwm = hwm
        self.down: set[int] = set()
        """Workers being restarted: their frames are dropped instead of waited on."""
        self.routed_away: collections.Counter[int] = collections.Counter()
        """Frames dropped per worker while it was being restarted."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pull: zmq.Socket) -> None:
        """Route `pull`'s frames from now on; the front's thread owns `pull` until `stop`."""
        self._thread = threading.Thread(target=self._route, args=(pull,), name="shard-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _route(self, pull: zmq.Socket) -> None:
        """The front: each frame to its stream's worker, as received."""
        pushes = []
        for index in range(len(self.endpoints)):
            push = self.context.socket(zmq.PUSH)
            push.setsockopt(zmq.SNDHWM, self.hwm)
            push.setsockopt(zmq.SNDTIMEO, WAIT_MS)
            push.bind(self.endpoints[index])
            pushes.append(push)
        table: dict[bytes, int] = {}
        try:
            while not self._stop.is_set():
                if not pull.poll(WAIT_MS):
                    continue
                for _ in range(4096):
                    try:
                        parts = pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    key = parts[0].bytes
                    shard = table.get(key)
                    if shard is None:
                        shard = zlib.crc32(key) % len(self.endpoints)
                        if len(table) < ROUTE_TABLE_LIMIT:
                            table[key] = shard
                    self._send(pushes[shard], shard, parts)
        finally:
            for push in pushes:
                push.close(linger=0)

    def _send(self, push: zmq.Socket, shard: int, parts: list[zmq.Frame]) -> None:
        """Wait for a busy worker (back-pressure, as one process would give), never for one being restarted."""
        while True:
            try:
                push.send_multipart(parts, flags=zmq.NOBLOCK if shard in self.down else 0, copy=False)
                return
            except zmq.Again:
                if shard in self.down or self._stop.is_set():
                    self.routed_away[shard] += 1
                    return
