"""The control API of a running core: status, speakers, enroll, remove, thresholds — and bad requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zmq

from daemon_harness import Daemon, run_cli
from voicewatch.bank import SpeakerBank
from voicewatch.control import ControlError, request
from voicewatch.plugins.replay import replay
from voicewatch.scan import segments
from voicewatch.shipped import DEMO_BANK, DEMO_ENROLL, DEMO_RECORDING


@pytest.fixture
def core(tmp_path: Path):
    bank = tmp_path / "bank.safetensors"
    shutil.copy(DEMO_BANK, bank)
    daemon = Daemon(tmp_path, config={"bank": {"path": str(bank)}})
    daemon.bank_path = bank
    yield daemon
    if daemon.process.poll() is None:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def raw_request(endpoint: str, parts: list[bytes]) -> dict:
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.RCVTIMEO, 10000)
    socket.connect(endpoint)
    socket.send_multipart(parts)
    reply = json.loads(socket.recv())
    socket.close(linger=0)
    return reply


def test_status_reports_live_streams_and_counters(core: Daemon) -> None:
    replay([str(DEMO_RECORDING)], core.ingest, ["first"], speed=None)
    core.wait_for_eos("first")
    status = request(core.control, {"cmd": "status"})
    assert status["frames"] > 0 and status["windows"] > 0 and status["streams"] == {}
    assert status["speakers"] == len(SpeakerBank.load(DEMO_BANK))
    assert 1 <= status["batches"] <= status["windows"]
    assert set(status["stage_seconds"]) >= {"ingest", "resample", "log_mel", "embed", "match", "detect", "publish"}
    memory = status["memory_mib"]  # the stream ended: its buffer is gone, its history's whole ring stays
    dim = SpeakerBank.load(DEMO_BANK).dim  # the shipped model's embedding
    assert memory["window_buffers"] == 0 and memory["history"] == round(300 * (2 * dim + 16) / 2**20, 3)
    assert memory["rss"] > memory["heap_in_use"] > 0
    cli = run_cli("status", "--connect", core.control, "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["frames"] == status["frames"]


def test_removing_a_speaker_persists_and_stops_its_detections(core: Daemon) -> None:
    names = [s["name"] for s in request(core.control, {"cmd": "speakers"})["speakers"]]
    target = names[0]
    replay([str(DEMO_RECORDING)], core.ingest, ["before"], speed=None)
    core.wait_for_eos("before")
    assert any(s.speaker == target and s.stream == "before" for s in segments(core.received))  # found while enrolled
    result = run_cli("speakers", "--connect", core.control, "--remove", target, "--json")
    assert result.returncode == 0, result.stderr
    assert target not in [s["name"] for s in json.loads(result.stdout)["speakers"]]
    assert target not in SpeakerBank.load(core.bank_path).names  # saved, so it survives a restart
    replay([str(DEMO_RECORDING)], core.ingest, ["after"], speed=None)
    core.wait_for_eos("after")
    assert all(s.speaker != target for s in segments(core.received) if s.stream == "after")


def test_enroll_and_set_threshold_through_the_core(core: Daemon) -> None:
    clips = sorted(str(p) for p in (DEMO_ENROLL / "alice").iterdir())
    reply = request(core.control, {"cmd": "enroll", "name": "newcomer", "clips": clips})
    assert reply["exemplars"] > 0
    request(core.control, {"cmd": "set_threshold", "name": "newcomer", "threshold": 0.95})
    saved = SpeakerBank.load(core.bank_path)
    assert "newcomer" in saved.names and saved.threshold("newcomer") == 0.95


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([b"{not json"], "not JSON"),
        ([b'{"v": 1, "cmd": "explode"}'], "unknown cmd"),
        ([b'{"v": 2, "cmd": "status"}'], '"v": 1'),
        ([b'{"v": 1, "cmd": "remove"}'], "'name'"),
        ([b'{"v": 1, "cmd": "remove", "name": "nobody"}'], "nobody"),
        ([b'{"v": 1, "cmd": "set_threshold", "name": "x", "threshold": true}'], "threshold"),
        ([b'{"v": 1, "cmd": "enroll", "name": "x", "clips": ["/nonexistent.wav"]}'], "no such file"),
        ([b'{"v": 1}', b"second part"], "one message part"),
        ([b"[" * 5000], "nested 5000 deep"),
        ([b'{"v": 1, "cmd": "status", "x": [[1]]}'], "limit of 2"),
        ([b'{"v": 1, "cmd": ["status"]}'], "unknown cmd"),
        ([b'{"v": 1, "v": 1, "cmd": "status"}'], "appears twice"),
        ([b'{"v": true, "cmd": "status"}'], '"v": 1'),
        ([b'{"v": 1, "cmd": "set_threshold", "name": "x", "threshold": NaN}'], "NaN is not JSON"),
        ([b'{"v": 1, "cmd": "set_threshold", "name": "x", "threshold": 1e999}'], "finite number"),
        ([b'{"v": 1, "cmd": "enroll", "name": "x", "clips": ["a.wav"], "min_speech_s": [1]}'], "min_speech_s"),
        ([b'{"v": 1, "cmd": "undo", "review": ' + b"9" * 30 + b"}"], "review id"),
    ],
)
def test_a_bad_request_gets_an_error_reply_and_the_core_keeps_serving(core: Daemon, parts: list[bytes], error: str) -> None:
    reply = raw_request(core.control, parts)
    assert reply["ok"] is False and error in reply["error"]
    assert request(core.control, {"cmd": "status"})["ok"] is True


def test_an_oversized_request_gets_an_error_reply(core: Daemon) -> None:
    padding = "x" * (64 << 10)  # over control.max_request_bytes (64 KiB)
    reply = raw_request(core.control, [json.dumps({"v": 1, "cmd": "status", "pad": padding}).encode()])
    assert reply["ok"] is False and reply["error"].startswith("request refused: ") and "limit of 65536" in reply["error"]
    assert request(core.control, {"cmd": "status"})["ok"] is True


def test_a_request_past_the_transport_guard_is_dropped_without_harming_the_core(core: Daemon) -> None:
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.connect(core.control)
    socket.send(b"x" * (2 << 20))  # over 16 × max_request_bytes: ZeroMQ drops it with the connection
    socket.close(linger=0)
    assert request(core.control, {"cmd": "status"})["ok"] is True


def test_no_core_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no core answered"):
        request(f"ipc://{tmp_path}/nothing", {"cmd": "status"}, timeout_s=0.5)


def test_enroll_from_a_time_range_of_a_stream_finds_that_voice_later(core: Daemon) -> None:
    from daemon_harness import demo_truth

    replay([str(DEMO_RECORDING)], core.ingest, ["archive"], speed=None)
    core.wait_for_eos("archive")
    first = next(t for t in demo_truth() if t["speaker"] == "alice")
    reply = request(core.control, {"cmd": "enroll", "name": "heard", "stream": "archive",
                                   "start": first["start"], "end": first["end"]})
    assert reply["exemplars"] >= 10
    with pytest.raises(ControlError, match="at least 10.0 s"):
        request(core.control, {"cmd": "enroll", "name": "short", "stream": "archive", "start": 0, "end": 3})
    replay([str(DEMO_RECORDING)], core.ingest, ["live"], speed=None)
    core.wait_for_eos("live")
    heard = [(s.start, s.end) for s in segments(core.received) if s.stream == "live" and s.speaker == "heard"]
    alice = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] == "alice"]
    assert heard and all(any(a <= (s + e) / 2 <= b for a, b in alice) for s, e in heard)
