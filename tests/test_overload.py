"""Falling behind: late windows are dropped whole, counted, and covered by `gap` events — never silently."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq

from daemon_harness import Daemon
from voicewatch.control import request
from voicewatch.overload import LoadShedder
from voicewatch.sourceframes import FrameEncoder
from voicewatch.windows import StreamBreak, Window


def window(stream: str, start: float, wall: float | None) -> Window:
    return Window(stream, 16000, start, start + 2.0, None if wall is None else wall + start, np.zeros(32000, np.float32))


def test_late_windows_become_one_overload_break_per_run_and_are_counted() -> None:
    shedder = LoadShedder(max_lag_s=5.0)
    now = 1000.0
    items = [window("late", 0.0, 900.0), window("fresh", 0.0, 998.0), window("late", 1.0, 900.0),
             window("replay", 0.0, None), window("late", 2.0, 900.0)]
    kept = shedder.shed(items, now) + shedder.flush()
    assert kept == [items[1], items[3], StreamBreak("late", "overload", 0.0, 4.0, 900.0)]
    assert shedder.dropped == {"late": 3}


def test_no_limit_keeps_everything() -> None:
    items = [window("late", 0.0, 0.0)]
    assert LoadShedder(None).shed(items, 1e9) == items


def test_a_core_drops_stale_windows_with_gap_events_and_keeps_serving_fresh_streams(tmp_path: Path) -> None:
    core = Daemon(tmp_path, config={"processing": {"max_lag_s": 5.0}})
    try:
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(core.ingest)
        now = time.time()
        seconds = 6
        noise = (np.random.default_rng(0).standard_normal((16000 * seconds, 1)) * 3000).astype("<i2")
        for name, wall in (("stale", now - 120.0), ("fresh", now)):
            encoder = FrameEncoder(name, 16000, 1, "s16le", wall=wall)
            for start in range(0, len(noise), 1600):
                chunk = noise[start:start + 1600]
                push.send_multipart(encoder.encode(chunk, eos=start + 1600 >= len(noise)))
        push.close(linger=5000)
        core.wait_for_eos("stale", "fresh")
        status = request(core.control, {"cmd": "status"})
    finally:
        assert core.stop() == 0
    windows = seconds - 1  # 2 s windows, 1 s hop
    assert status["windows_dropped"] == {"stale": windows}
    gaps = [e for e in core.events_of("stale") if e.type == "gap"]
    assert {g.reason for g in gaps} == {"overload"}
    covered = sorted((g.start, g.end) for g in gaps)  # one gap per tick's run of dropped windows
    assert covered[0][0] == 0.0 and covered[-1][1] == float(seconds)
    assert all(later[0] <= earlier[1] for earlier, later in zip(covered, covered[1:], strict=False))
    assert not [e for e in core.events_of("fresh") if e.type == "gap"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_three_times_the_sustainable_load_for_60_s_stays_bounded_and_accounts_for_every_window(tmp_path: Path) -> None:
    """The core is made expensive per stream (a 50 ms hop: 20 windows per stream-second) and held to one
    CPU thread, so that on any machine a sender of one process can overload it; its capacity is measured
    on many streams at once (full batches, as under load), then three times that arrives in real time for
    60 s."""
    hop, seconds, rate, frame = 0.05, 60, 16000, 1600
    core = Daemon(tmp_path, config={"windows": {"hop_s": hop}, "processing": {"max_lag_s": 2.0, "threads": 1},
                                    "model": {"device": "cpu"}, "control": {"history_s": 0.0}})
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(core.ingest)
    noise = (np.random.default_rng(1).standard_normal((frame, 1)) * 3000).astype("<i2")
    try:
        calibrations = [FrameEncoder(f"calibrate{i}", rate, 1, "s16le") for i in range(16)]  # no wall: never shed
        started = time.monotonic()
        for index in range(100):  # 10 s of audio per stream, as fast as the core takes it
            for calibration in calibrations:
                push.send_multipart(calibration.encode(noise, eos=index == 99))
        core.wait_for_eos(*[c.stream for c in calibrations])
        capacity = request(core.control, {"cmd": "status"})["windows"] / (time.monotonic() - started)
        streams = max(2, round(3 * capacity * hop))
        before = request(core.control, {"cmd": "status"})["windows"]
        baseline, peak = rss_mb(core.process.pid), 0.0
        wall = time.time()
        encoders = [FrameEncoder(f"load{i}", rate, 1, "s16le", wall=wall) for i in range(streams)]
        frames = seconds * rate // frame
        for index in range(frames):
            delay = wall + index * frame / rate - time.time()
            if delay > 0:
                time.sleep(delay)  # real-time pacing of the sources
            for encoder in encoders:
                push.send_multipart(encoder.encode(noise, eos=index == frames - 1))
            if index % 10 == 0:
                peak = max(peak, rss_mb(core.process.pid))
        core.wait_for_eos(*[e.stream for e in encoders], timeout=300)
        peak = max(peak, rss_mb(core.process.pid))
        status = request(core.control, {"cmd": "status"})
    finally:
        push.close(linger=0)
        assert core.stop() == 0
    per_stream = int(round((seconds - 2.0) / hop)) + 1
    print(f"capacity {capacity:.0f} windows/s, {streams} streams × {per_stream} windows, "
          f"dropped {sum(status['windows_dropped'].values())}, RSS {baseline:.0f} → {peak:.0f} MB")
    dropped = status["windows_dropped"]
    processed = status["windows"] - before
    assert processed + sum(dropped.values()) == streams * per_stream
    assert sum(dropped.values()) > 0, f"{streams} streams did not overload a core of {capacity:.0f} windows/s"
    for stream, count in dropped.items():
        gaps = [e for e in core.events_of(stream) if e.type == "gap" and e.reason == "overload"]
        covered = sum(round((g.end - g.start - 2.0) / hop) + 1 for g in gaps)
        assert covered == count, f"{stream}: {count} windows dropped, gaps cover {covered}"
    # The stated bound: the socket queues (receive HWM 10,000 frames ≈ 35 MB here) plus one tick's batch
    # of 256 windows through resampling, log-MEL and the net (≈ 150-250 MB of working set that the
    # allocator keeps) plus headroom. Measured: 250-390 MB on 2 cores.
    assert peak - baseline < 500, f"RSS grew from {baseline:.0f} MB to {peak:.0f} MB"
