"""Falling behind: late windows are dropped whole, counted, and covered by `gap` events — never silently."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq

from daemon_harness import Daemon
from voicewatch.control import request
from voicewatch.ingest import StreamBreak
from voicewatch.overload import LoadShedder
from voicewatch.sourceframes import FrameEncoder
from voicewatch.windows import Window


def window(stream: str, start: float, wall: float | None) -> Window:
    return Window(stream, 16000, start, start + 2.0, None if wall is None else wall + start, np.zeros(32000, np.float32))


def test_late_windows_become_one_overload_break_per_run_and_are_counted() -> None:
    shedder = LoadShedder(max_lag_s=5.0)
    now = 1000.0
    items = [window("late", 0.0, 900.0), window("fresh", 0.0, 998.0), window("late", 1.0, 900.0),
             window("replay", 0.0, None), window("late", 2.0, 900.0)]
    kept = shedder.shed(items, now)
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
