"""Stream shards (processing.workers > 1): the same events as one process, and a dead worker costs only its streams."""

from __future__ import annotations

import os
import signal
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from daemon_harness import Daemon, demo_truth, write_recording
from voicewatch.bank import SpeakerBank
from voicewatch.config import ClipsConfig, Config, ConfigError, ProcessingConfig
from voicewatch.control import request
from voicewatch.plugins.replay import replay
from voicewatch.protocol import FrameHeader, encode_frame
from voicewatch.scan import segments
from voicewatch.shipped import DEMO_BANK

SHARDED = {"processing": {"workers": 2}}


def shard_of(stream: str) -> int:
    return zlib.crc32(stream.encode()) % 2


def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def finished(daemon: Daemon) -> None:
    if daemon.process.poll() is None:
        assert daemon.stop() == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr, daemon.stderr


def test_a_bad_worker_count_or_workers_with_clips_is_refused_with_the_key_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"processing.workers: -1 is invalid; allowed: 0 or 1"):
        Config(processing=ProcessingConfig(workers=-1)).validate()
    with pytest.raises(ConfigError, match=r"processing.workers: 2 is invalid; allowed: 0 or 1 while clips.path is set"):
        Config(processing=ProcessingConfig(workers=2), clips=ClipsConfig(path="clips")).validate()
    assert Config(processing=ProcessingConfig(workers=2)).validate().processing.workers == 2


def test_sharded_and_single_process_cores_give_the_same_segments(tmp_path: Path) -> None:
    enrolled = set(SpeakerBank.load(DEMO_BANK).names)
    truth = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] in enrolled]
    others = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] not in enrolled]
    streams = ["one", "two"]  # one on each shard
    assert {shard_of(s) for s in streams} == {0, 1}
    files = [write_recording(tmp_path / "one.wav", [1.0, truth[0], 1.0, others[0], truth[1]])[0],
             write_recording(tmp_path / "two.wav", [others[-1], 2.0, truth[-1]], rate_out=48000, channels=2)[0]]
    found = []
    for name, config in (("single", {}), ("sharded", SHARDED)):
        folder = tmp_path / name
        folder.mkdir()
        daemon = Daemon(folder, config)
        try:
            replay([str(f) for f in files], daemon.ingest, streams, speed=None)
            daemon.wait_for_eos(*streams)
        finally:
            finished(daemon)
        found.append(sorted((s.stream, s.speaker, s.start, s.end, s.peak) for s in segments(daemon.received)))
    single, sharded = found
    assert {s[0] for s in single} == set(streams)
    assert [s[:4] for s in sharded] == [s[:4] for s in single]
    assert [s[4] for s in sharded] == pytest.approx([s[4] for s in single], abs=1e-4)


def _send(endpoint: str, streams: list[str], stop: threading.Event) -> None:
    """Noise frames of 0.1 s at 16 kHz for each stream, twice real time, until `stop`."""
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint)
    rng = np.random.default_rng(0)
    seq = 0
    while not stop.is_set():
        for stream in streams:
            header = FrameHeader(seq=seq, rate=16000, channels=1, format="f32le", pts=seq * 0.1)
            pcm = (0.1 * rng.standard_normal(1600)).astype("<f4").tobytes()
            push.send_multipart(encode_frame(stream, header, pcm))
        seq += 1
        stop.wait(0.05)
    push.close(linger=0)


def test_a_killed_shard_is_restarted_its_streams_get_gaps_and_the_other_streams_keep_flowing(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, SHARDED)
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(daemon.ingest, ["one", "two"], stop))
    try:
        def workers() -> list[dict]:
            return request(daemon.control, {"cmd": "status"})["workers"]

        def holder(stream: str) -> dict:
            return next((w for w in workers() if stream in w["streams"]), {"pid": None, "windows": 0})

        sender.start()
        until(lambda: all(any(s in w["streams"] and w["windows"] >= 2 for w in workers()) for s in ("one", "two")))
        memory = request(daemon.control, {"cmd": "status"})["memory_mib"]  # the workers' buffers and processes count
        assert memory["window_buffers"] > 0 and memory["workers_rss"] > 10
        garbage = zmq.Context.instance().socket(zmq.PUSH)
        garbage.connect(daemon.ingest)
        garbage.send_multipart([b"one", b"{}"])  # two parts: counted by the worker, nothing else changes
        garbage.close(linger=1000)
        until(lambda: request(daemon.control, {"cmd": "status"})["bad_frames"] == {"bad_parts": 1})
        victim, survivor = holder("two"), holder("one")
        assert (victim["worker"], survivor["worker"]) == (shard_of("two"), shard_of("one"))
        os.kill(victim["pid"], signal.SIGKILL)

        gap = daemon.wait_for(lambda e: e.type == "gap" and e.reason == "worker_lost")
        assert gap.stream == "two" and gap.start == gap.end > 0
        windows_then = holder("one")["windows"]
        until(lambda: holder("one")["windows"] >= windows_then + 3)  # the other stream never stopped
        until(lambda: holder("two")["pid"] not in (None, victim["pid"]))  # restarted, and its stream is back
        assert holder("one")["pid"] == survivor["pid"]
        assert not [e for e in daemon.received if e.type == "gap" and e.stream == "one"]
        assert f"stream shard {victim['worker']} (pid {victim['pid']}) exited" in daemon.stderr
    finally:
        stop.set()
        if sender.is_alive():
            sender.join()
        finished(daemon)
