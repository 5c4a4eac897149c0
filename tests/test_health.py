"""Stream health notices: idle and silent streams are reported once, and so is their recovery."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq

from daemon_harness import Daemon
from voicewatch.config import Config
from voicewatch.health import HealthWatch
from voicewatch.ingest import Ingest
from voicewatch.sourceframes import FrameEncoder


def feed(ingest: Ingest, encoder: FrameEncoder, samples: np.ndarray) -> None:
    ingest.accept(encoder.encode(samples.reshape(-1, 1)))


def test_idle_silent_and_recovered_are_each_reported_once() -> None:
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    watch = HealthWatch(idle_s=10.0, silence_s=5.0)
    encoder = FrameEncoder("ch1", 16000, 1, "s16le")
    loud = (np.sin(np.arange(1600) / 3) * 10000).astype("<i2")
    quiet = np.zeros(1600, dtype="<i2")
    feed(ingest, encoder, loud)
    start = ingest.last_seen["ch1"]
    assert watch.check(ingest.streams(), start + 1) == []
    feed(ingest, encoder, quiet)
    ingest.last_seen["ch1"] = start + 6  # frames keep coming, all silent
    assert [e.reason for e in watch.check(ingest.streams(), start + 6)] == ["silent"]
    assert watch.check(ingest.streams(), start + 7) == []
    assert [e.reason for e in watch.check(ingest.streams(), start + 17)] == ["idle"]
    feed(ingest, encoder, loud)
    assert [e.reason for e in watch.check(ingest.streams(), time.monotonic())] == ["recovered"]
    assert watch.unhealthy() == {}


def test_a_core_reports_a_stream_that_goes_quiet(tmp_path: Path) -> None:
    core = Daemon(tmp_path, config={"health": {"idle_s": 0.5, "silence_s": 60.0}})
    try:
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(core.ingest)
        encoder = FrameEncoder("quiet", 16000, 1, "s16le")
        push.send_multipart(encoder.encode((np.ones((1600, 1)) * 5000).astype("<i2")))
        event = core.wait_for(lambda e: e.stream == "quiet" and e.type == "status", timeout=30)
        assert event.reason == "idle"
        push.send_multipart(encoder.encode((np.ones((1600, 1)) * 5000).astype("<i2")))
        assert core.wait_for(lambda e: e.stream == "quiet" and e.type == "status", timeout=30).reason == "recovered"
        push.close(linger=0)
    finally:
        assert core.stop() == 0


def test_the_stream_view_holds_what_health_and_status_read() -> None:
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    wall = time.time() - 3.0
    encoder = FrameEncoder("ch1", 16000, 1, "s16le", wall=wall)
    feed(ingest, encoder, np.zeros(16000, dtype="<i2"))
    feed(ingest, encoder, np.zeros(8000, dtype="<i2"))
    (stream,) = ingest.streams()
    assert (stream.name, stream.rate, stream.time, stream.audio_s) == ("ch1", 16000, 1.5, 1.5)
    assert stream.origin_wall == wall and stream.lag_s(wall + 2.0) == 0.5
    assert stream.real_time_factor(stream.first_seen + 0.4) is None  # too early to say
    assert stream.real_time_factor(stream.first_seen + 3.0) == 0.5
    ingest.close("ch1")
    assert ingest.streams() == []
