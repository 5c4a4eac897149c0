"""Faults with real processes and sockets: kill -9, fuzzed ingest, corrupt files on reload."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon_harness import Daemon
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.control import request
from voicewatch.embedder import Embedder
from voicewatch.eventlog import read_events
from voicewatch.plugins.replay import replay
from voicewatch.protocol import Event, FrameHeader
from voicewatch.scan import scan, segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING


def test_kill_9_loses_no_published_event_and_ids_continue_after_restart(tmp_path: Path) -> None:
    log_path = tmp_path / "events.sqlite"
    core = Daemon(tmp_path, log_path=log_path)
    def send() -> None:
        with contextlib.suppress(TimeoutError):  # the core dies under it
            replay([str(DEMO_RECORDING)], core.ingest, ["victim"], speed=8.0, timeout_s=5.0)

    sender = threading.Thread(target=send)
    sender.start()
    core.wait_for(lambda e: e.type == "update", timeout=120)
    core.process.send_signal(signal.SIGKILL)
    core.process.wait(timeout=30)
    sender.join()
    while core.sub.poll(200):  # whatever was already on the wire
        core.received.append(Event.from_message(core.sub.recv_multipart()))
    published = [e for e in core.received if e.id]
    logged = list(read_events(log_path))
    assert published, "the core published nothing before the kill"
    assert {e.id: e for e in published}.items() <= {e.id: e for e in logged}.items()
    assert len({e.id for e in logged}) == len(logged)

    restarted = Daemon(tmp_path, log_path=log_path)
    try:
        replay([str(DEMO_RECORDING)], restarted.ingest, ["survivor"], speed=None)
        restarted.wait_for_eos("survivor")
    finally:
        assert restarted.stop() == 0
    after = list(read_events(log_path, since=logged[-1].id))
    assert after and after[0].id == logged[-1].id + 1
    ids = [e.id for e in read_events(log_path)]
    assert ids == sorted(set(ids))


# -- fuzzing ------------------------------------------------------------------------------------

def valid_header(seq: int, rate: int, channels: int, fmt: str) -> bytes:
    return FrameHeader(seq=seq, rate=rate, channels=channels, format=fmt, pts=seq * 0.1).to_json()


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                           max_leaves=8)


@st.composite
def fuzz_frames(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.sampled_from(["garbage", "parts", "header", "payload", "valid"]))
    stream = draw(st.sampled_from([f"fz{i}".encode() for i in range(12)] + [b"fz.3", b"\xff\xfe", b"", b"x" * 70]))
    if kind == "garbage":
        return draw(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
    if kind == "parts":
        return [stream] * draw(st.sampled_from([1, 2, 4]))
    if kind == "header":
        header = draw(st.dictionaries(st.sampled_from(["v", "seq", "rate", "channels", "format", "pts", "wall", "eos"]),
                                      json_values, max_size=8))
        return [stream, json.dumps(header).encode(), draw(st.binary(max_size=64))]
    rate = draw(st.sampled_from([8000, 16000, 44100, 48000, 7999, 96000]))
    channels = draw(st.integers(0, 9))
    fmt = draw(st.sampled_from(["s16le", "f32le", "u8"]))
    seq = draw(st.integers(0, 5))
    if kind == "payload":
        payload = draw(st.binary(max_size=200))
    else:
        payload = (np.random.default_rng(seq).standard_normal(1600 * max(channels, 1)) * 1000).astype("<i2").tobytes()
    return [stream, valid_header(seq, rate, channels, fmt), payload]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("fuzz")
    core = Daemon(workdir, config={"ingest": {"max_frame_bytes": 65536, "max_streams": 8}})
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(core.ingest)
    clean = threading.Thread(target=replay, args=([str(DEMO_RECORDING)], core.ingest, ["clean"]), kwargs={"speed": 4.0})
    clean.start()
    deadline = time.monotonic() + 60
    while "clean" not in request(core.control, {"cmd": "status"})["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the core's own status until the clean stream holds its slot
    yield core, push, clean
    push.close(linger=0)
    clean.join()
    if core.process.poll() is None:
        core.stop()


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(fuzz_frames(), min_size=20, max_size=20))  # 500 × 20 = 10,000 frames
def test_fuzzed_frames_never_take_the_core_down(fuzz_target, batch: list[list[bytes]]) -> None:
    core, push, _ = fuzz_target
    for frame in batch:
        if frame:
            push.send_multipart(frame)
    assert core.process.poll() is None, core.stderr


def test_a_clean_stream_beside_10000_fuzzed_frames_gives_exactly_its_own_events(fuzz_target) -> None:
    core, _, clean = fuzz_target
    clean.join()
    core.wait_for_eos("clean", timeout=300)
    assert core.stop() == 0
    assert "Traceback" not in core.stderr
    alone = scan([DEMO_RECORDING], ["clean"], Embedder.load(), SpeakerBank.load(DEMO_BANK), Config())
    live = [e for e in core.received if e.stream == "clean" and e.type != "status"]
    assert [(e.type, e.speaker, e.start, e.end) for e in live] == [
        (e.type, e.speaker, e.start, e.end) for e in alone if e.type != "status"]
    assert [s.peak for s in segments(live)] == pytest.approx([s.peak for s in segments(alone)], abs=1e-3)


# -- corrupt files on reload ----------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["config", "model", "bank"])
def test_a_corrupt_file_on_reload_is_refused_and_the_old_state_keeps_serving(tmp_path: Path, broken: str) -> None:
    bank = tmp_path / "bank.safetensors"
    shutil.copy(DEMO_BANK, bank)
    core = Daemon(tmp_path, config={"bank": {"path": str(bank)}})
    try:
        if broken == "config":
            core.config.write_text("ingest: [this is: not: valid")
        elif broken == "model":
            model = tmp_path / "model.safetensors"
            model.write_bytes(b"\x00" * 100)
            core.config.write_text(core.config.read_text() + f"model: {{path: '{model}'}}\n")
        else:
            bank.write_bytes(b"garbage")
        core.process.send_signal(signal.SIGHUP)
        core.wait_for_log("reload refused")
        replay([str(DEMO_RECORDING)], core.ingest, ["still"], speed=None)
        core.wait_for_eos("still")
        assert segments(e for e in core.received if e.stream == "still")
    finally:
        assert core.stop() == 0
    assert "Traceback" not in core.stderr
