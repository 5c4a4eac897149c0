"""The core as users run it: a real `voicewatch run` subprocess, real sockets, real recordings."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq

from daemon_harness import Daemon, demo_truth, run_cli, write_recording
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.plugins.replay import replay
from voicewatch.protocol import FrameHeader, encode_frame
from voicewatch.scan import scan, segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING

HOP = Config().windows.hop_s
ENROLLED = SpeakerBank.load(DEMO_BANK).names


def truth_spans(speaker: str) -> list[tuple[float, float]]:
    return [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] == speaker]


def assert_matches(found: list[tuple[float, float]], truth: list[tuple[float, float]]) -> None:
    """Every true segment found once, edges within one hop; nothing else found."""
    assert len(found) == len(truth), f"found {found}, truth {truth}"
    for (fs, fe), (ts, te) in zip(found, truth, strict=True):
        assert abs(fs - ts) <= HOP + 0.05 and abs(fe - te) <= HOP + 0.05, f"found {(fs, fe)} for truth {(ts, te)}"


def spans(events, stream: str, speaker: str) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in segments(events) if s.stream == stream and s.speaker == speaker]


@pytest.fixture
def daemon(tmp_path: Path):
    core = Daemon(tmp_path)
    yield core
    if core.process.poll() is None:
        code = core.stop()
        assert code == 0, core.stderr
    assert "Traceback" not in core.stderr, core.stderr


def test_replayed_demo_yields_the_ground_truth_segments_and_sigterm_exits_cleanly(daemon: Daemon) -> None:
    replay([str(DEMO_RECORDING)], daemon.ingest, ["demo"], speed=None)
    daemon.wait_for_eos("demo")
    assert daemon.stop() == 0
    for speaker in ENROLLED:
        assert_matches(spans(daemon.received, "demo", speaker), truth_spans(speaker))
    ids = [e.id for e in daemon.received if e.id]  # heartbeats are unnumbered
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert "Traceback" not in daemon.stderr


def test_scan_and_run_give_identical_segments(daemon: Daemon, tmp_path: Path) -> None:
    replay([str(DEMO_RECORDING)], daemon.ingest, ["demo"], speed=None)
    daemon.wait_for_eos("demo")
    live = [s for s in segments(daemon.received) if s.stream == "demo"]

    result = run_cli("scan", str(DEMO_RECORDING), "--stream", "demo", "--json")
    assert result.returncode == 0, result.stderr
    scanned = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s["speaker"], s["start"], s["end"]) for s in scanned] == [(s.speaker, s.start, s.end) for s in live]
    assert [s["peak"] for s in scanned] == pytest.approx([s.peak for s in live], abs=1e-3)


def test_two_streams_at_once_do_not_leak_into_each_other(daemon: Daemon, tmp_path: Path) -> None:
    target = ENROLLED[0]
    truth = truth_spans(target)
    others = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] not in ENROLLED]
    with_target, where = write_recording(tmp_path / "with.wav", [1.0, truth[0], 2.0, others[0], 2.0])
    without, _ = write_recording(tmp_path / "without.wav", [1.0, others[0], 2.0, others[-1], 2.0],
                                 rate_out=48000, channels=2)
    replay([str(with_target), str(without)], daemon.ingest, ["one", "two"], speed=None)
    daemon.wait_for_eos("one", "two")
    assert_matches(spans(daemon.received, "one", target), [where[0]])
    assert [e for e in daemon.events_of("two") if e.type in ("start", "update", "end")] == []


def test_sigterm_ends_open_segments_with_end_events(daemon: Daemon) -> None:
    target = ENROLLED[0]
    start, end = truth_spans(target)[0]
    header = FrameHeader(seq=0, rate=16000, channels=1, format="f32le", pts=0.0)
    import torch
    import torchaudio

    from daemon_harness import demo_audio

    audio, rate = demo_audio()
    piece = audio[round(start * rate): round((start + (end - start) * 0.7) * rate)]
    piece = torchaudio.functional.resample(torch.from_numpy(piece), rate, 16000).numpy()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(daemon.ingest)
    push.send_multipart(encode_frame("open", header, piece.astype("<f4").tobytes()))  # no eos
    opened = daemon.wait_for(lambda e: e.stream == "open" and e.type == "start")
    push.close(linger=1000)
    assert daemon.stop() == 0
    ends = [e for e in daemon.events_of("open") if e.type == "end"]
    assert len(ends) == 1 and ends[0].speaker == opened.speaker and ends[0].start == opened.start


def test_bad_frames_are_dropped_and_a_clean_stream_beside_them_is_unaffected(daemon: Daemon, tmp_path: Path) -> None:
    garbage = zmq.Context.instance().socket(zmq.PUSH)
    garbage.connect(daemon.ingest)
    stop = threading.Event()

    def spray() -> None:
        rng = np.random.default_rng(0)
        seq = 0
        while not stop.is_set():
            kind = seq % 4
            if kind == 0:
                garbage.send_multipart([b"bad", b"{not json", b"\x00" * 10])
            elif kind == 1:
                garbage.send_multipart([b"bad", b'{"v":1,"seq":0}', b""])
            elif kind == 2:
                garbage.send_multipart([b"bad.stream", rng.bytes(20)])
            else:
                header = FrameHeader(seq=seq, rate=16000, channels=2, format="s16le", pts=0.0)
                garbage.send_multipart(encode_frame("odd", header, b"\x01\x02\x03"))
            seq += 1
            stop.wait(0.002)

    sprayer = threading.Thread(target=spray)
    sprayer.start()
    try:
        replay([str(DEMO_RECORDING)], daemon.ingest, ["demo"], speed=None)
        daemon.wait_for_eos("demo")
    finally:
        stop.set()
        sprayer.join()
        garbage.close(linger=0)
    assert daemon.stop() == 0
    embedder = Embedder.load()
    alone = scan([DEMO_RECORDING], ["demo"], embedder, SpeakerBank.load(DEMO_BANK), Config())
    assert [(s.speaker, s.start, s.end) for s in segments(daemon.received) if s.stream == "demo"] == [
        (s.speaker, s.start, s.end) for s in segments(alone)
    ]
    assert "dropped ingest frame" in daemon.stderr


def test_a_bad_config_value_stops_the_core_at_start_with_the_key_and_value(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("windows: {length_s: 2.0, hop_s: 5.0}\n")
    result = run_cli("run", "-c", str(config), timeout=60)
    assert result.returncode == 2
    assert "windows.hop_s" in result.stderr and "5.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_and_tail_commands_show_the_segments_as_readable_lines(daemon: Daemon) -> None:
    import subprocess
    import sys

    target = ENROLLED[0]
    tail = subprocess.Popen([sys.executable, "-m", "voicewatch", "tail", "--connect", daemon.events, "--stream", "demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed: list[str] = []
    eos_printed = threading.Event()

    def read() -> None:
        for line in tail.stdout:
            printed.append(line)
            if "eos" in line:
                eos_printed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        daemon.wait_for(lambda e: e.reason == "heartbeat")  # give tail's subscription time to reach the core
        for _ in range(10):
            daemon.wait_for(lambda e: e.reason == "heartbeat")
        result = run_cli("replay", str(DEMO_RECORDING), "--stream", "demo", "--speed", "max", "--connect", daemon.ingest)
        assert result.returncode == 0, result.stderr
        daemon.wait_for_eos("demo")
        assert eos_printed.wait(60), "".join(printed)  # tail, a process of its own, may be a little behind
    finally:
        tail.terminate()
        err = tail.communicate(timeout=30)[1]
        reader.join(10)
    out = "".join(printed)
    lines = [line for line in out.splitlines() if f"  {target}  " in line and "peak" in line and "mean" in line]
    assert len(lines) == len(truth_spans(target)), out + err
    assert lines[0].startswith(f"demo  {target}  ")
    assert "Traceback" not in err


def test_demo_command_prints_the_found_timeline_beside_the_ground_truth() -> None:
    result = run_cli("demo", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ground truth" in result.stdout
    for speaker in ENROLLED:
        f1 = float(result.stdout.split(f"{speaker}: timeline F1 ")[1].split()[0])
        assert f1 >= 0.8, result.stdout
