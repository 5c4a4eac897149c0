"""`voicewatch scan --workers N`: recordings decoded, windowed and turned into log-MEL features in N worker
processes, scored in batches by the parent's one device scorer.

Each worker takes every N-th file and runs the same Ingest and shared-frame features as `scan`, on one CPU
thread; it pushes each batch to the parent over ZeroMQ (ipc://) in the batch format of batchwire.py. The parent takes
whatever batches are waiting, scores them together and runs the one detector over them in arrival order:
a stream's items stay in order, so its segments are the ones a single-process scan finds.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from collections.abc import Sequence

import torch
import zmq

from voicewatch import batchwire
from voicewatch.audiofile import AudioFileError, TrackChoice
from voicewatch.bank import SpeakerBank
from voicewatch.batchwire import Batch
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.features import FeatureExtractor, FeatureSettings
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.protocol import Event
from voicewatch.sharedframes import SharedFrames
from voicewatch.sourceframes import file_frames
from voicewatch.windows import Item, Window

POLL_MS = 1000
"""How often the parent checks that its workers are alive while it waits for a batch."""


def scan_parallel(paths: Sequence[str | os.PathLike[str]], streams: Sequence[str], embedder: Embedder,
                  bank: SpeakerBank, config: Config, workers: int, chunk_s: float = 1.0,
                  track: TrackChoice = TrackChoice()) -> list[Event]:
    """All events `scan` gives for these recordings, with the decoding and features spread over `workers`
    processes (no more than there are files)."""
    pipeline = Pipeline(embedder, bank, config.detector, config.windows.hop_s, config.processing.max_batch_windows)
    jobs = [(os.fspath(path), stream) for path, stream in zip(paths, streams, strict=True)]
    workers = max(1, min(workers, len(jobs)))
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 2 * workers)
    events: list[Event] = []
    threads = torch.get_num_threads()
    if embedder.device.type == "cpu":  # the scorer takes the cores the workers leave: no threads spinning beside them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    with tempfile.TemporaryDirectory(prefix="voicewatch-scan-") as folder:
        endpoint = f"ipc://{folder}/batches"
        pull.bind(endpoint)
        spawn = multiprocessing.get_context("spawn")  # no torch state forked into the workers
        processes = [spawn.Process(target=_work, args=(endpoint, jobs[i::workers], config, embedder.settings,
                                                       chunk_s, track), daemon=True) for i in range(workers)]
        for process in processes:
            process.start()
        try:
            done = 0
            while done < workers:
                batches = _waiting(pull, processes, config.processing.max_batch_windows)
                done += sum(batch is None for batch in batches)
                events += _decide(pipeline, [batch for batch in batches if batch is not None])
            for process in processes:
                process.join()
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
            pull.close(linger=0)
            context.term()
            torch.set_num_threads(threads)
    return events + pipeline.close_all()


def _waiting(pull: zmq.Socket, processes: list, max_windows: int) -> list[Batch | None]:
    """The next batch, and those already waiting behind it up to `max_windows` windows; None for a finished
    worker. Raises AudioFileError for a recording a worker could not read, RuntimeError for a worker that died."""
    while not pull.poll(POLL_MS):
        for process in processes:
            if process.exitcode not in (None, 0):
                raise RuntimeError(f"a scan worker exited with code {process.exitcode}")
    batches: list[Batch | None] = []
    windows = 0
    while windows < max_windows:
        try:
            parts = pull.recv_multipart(flags=zmq.NOBLOCK if batches else 0, copy=False)
        except zmq.Again:
            break
        header, batch = batchwire.decode(parts)
        if "error" in header:
            raise AudioFileError(header["error"])
        if header.get("done"):
            batches.append(None)
            continue
        batches.append(batch)
        windows += len(batch.levels)
    return batches


def _decide(pipeline: Pipeline, batches: list[Batch]) -> list[Event]:
    """One scorer call for the windows of all `batches`, then the detector over their items in order."""
    if not batches:
        return []
    batch = batchwire.join(batches)
    windows = [item for item in batch.items if isinstance(item, Window)]
    scores, levels = pipeline.score_features(windows, torch.from_numpy(batch.features), batch.levels)
    return pipeline.decide(batch.items, scores, levels)


def _work(endpoint: str, jobs: list[tuple[str, str]], config: Config, settings: FeatureSettings, chunk_s: float,
          track: TrackChoice) -> None:
    """A worker: its recordings → batches of items, features and levels, pushed to the parent."""
    torch.set_num_threads(1)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 2)
    push.connect(endpoint)
    ingest = Ingest(config.ingest, config.windows)
    frames = SharedFrames(FeatureExtractor(settings))
    try:
        for path, stream in jobs:
            batch: list[Item] = []
            for frame in file_frames(path, stream, chunk_s, track=track):
                batch += ingest.accept(frame)
                if len(batch) >= config.processing.max_batch_windows:
                    _push(push, frames, batch)
                    batch = []
            _push(push, frames, batch)
        push.send_multipart([json.dumps({"done": True}).encode()])
    except AudioFileError as exc:
        push.send_multipart([json.dumps({"error": str(exc)}).encode()])
    finally:
        push.close(linger=-1)
        context.term()


def _push(push: zmq.Socket, frames: SharedFrames, items: list[Item]) -> None:
    push.send_multipart(batchwire.encode(items, *batchwire.make(frames, items)))
