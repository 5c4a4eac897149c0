"""Reviews feed back into the bank: a rejected false alarm stops firing, a confirmed detection makes the voice
easier to find, and every review is logged and can be undone bit for bit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from daemon_harness import Daemon, run_cli, write_recording
from voicewatch.bank import SpeakerBank
from voicewatch.control import ControlError, request
from voicewatch.plugins.replay import replay
from voicewatch.protocol import Event
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING


def start_desk(tmp_path: Path, **bank: object) -> Daemon:
    path = tmp_path / "bank.safetensors"
    SpeakerBank.load(DEMO_BANK).save(path)  # the bank as this version writes it
    daemon = Daemon(tmp_path, config={"bank": {"path": str(path), **bank}, "clips": {"path": str(tmp_path / "clips")}},
                    log_path=tmp_path / "events.sqlite")
    daemon.bank_path = path
    return daemon


@pytest.fixture
def desk(tmp_path: Path):
    daemon = start_desk(tmp_path)
    yield daemon
    if daemon.process.poll() is None:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def detections(daemon: Daemon, path: Path | str, stream: str) -> list[Event]:
    replay([str(path)], daemon.ingest, [stream], speed=None)
    daemon.wait_for_eos(stream)
    return [e for e in daemon.events_of(stream) if e.type == "end"]


def test_a_rejected_false_alarm_stops_firing_on_the_same_audio(tmp_path: Path) -> None:
    bob, _ = write_recording(tmp_path / "bob.wav", [(28.0, 40.0)])  # bob only; alice's scores reach 0.65 here
    daemon = start_desk(tmp_path, threshold=0.6)  # a bank whose threshold lets bob pass as alice
    try:
        false_alarms = detections(daemon, bob, "first")
        assert false_alarms and all(e.speaker == "alice" and e.clip for e in false_alarms)
        for alarm in false_alarms:
            result = run_cli("review", alarm.clip, "reject", "--note", "that is bob", "--who", "desk1",
                             "--connect", daemon.control)
            assert result.returncode == 0, result.stderr
            assert "rejected" in result.stdout
        threshold = SpeakerBank.load(daemon.bank_path).threshold("alice")
        assert threshold > 0.6
        assert request(daemon.control, {"cmd": "speakers"})["speakers"][0]["threshold"] == threshold  # hot: no restart
        assert detections(daemon, bob, "again") == []
        # the real alice is still found
        assert [e.speaker for e in detections(daemon, DEMO_RECORDING, "demo")].count("alice") == 3
    finally:
        assert daemon.stop() == 0


def test_a_confirmed_detection_raises_the_score_of_a_later_different_clip_of_the_same_voice(desk: Daemon) -> None:
    first, later = detections(desk, DEMO_RECORDING, "before")[:2]
    assert (first.start, later.start) == (0.5, 40.5)
    reply = request(desk.control, {"cmd": "review", "id": first.clip, "verdict": "confirm", "who": "desk1"})
    assert reply["added"] > 5 and reply["speaker"] == "alice"
    assert len(SpeakerBank.load(desk.bank_path).exemplars("alice")) == 38 + reply["added"] - reply["evicted"]
    again = [e for e in detections(desk, DEMO_RECORDING, "after") if e.end == later.end]
    assert len(again) == 1 and again[0].mean > later.mean + 0.01
    assert again[0].start <= later.start  # higher scores can only widen the segment


def test_undo_restores_the_bank_bit_for_bit(desk: Daemon) -> None:
    original = desk.bank_path.read_bytes()
    first, second = detections(desk, DEMO_RECORDING, "demo")[:2]
    confirmed = request(desk.control, {"cmd": "review", "id": first.clip, "verdict": "confirm", "who": "ann"})["review"]
    after_confirm = desk.bank_path.read_bytes()
    rejected = request(desk.control, {"cmd": "review", "id": second.clip, "verdict": "reject", "who": "bo",
                                      "note": "not her"})["review"]
    assert desk.bank_path.read_bytes() not in (original, after_confirm)
    with pytest.raises(ControlError, match="changed since review"):  # the later review stands on this one
        request(desk.control, {"cmd": "undo", "review": confirmed})
    with pytest.raises(ControlError, match="already reviewed"):
        request(desk.control, {"cmd": "review", "id": second.clip, "verdict": "confirm"})

    result = run_cli("review", "undo", str(rejected), "--who", "carl", "--connect", desk.control)
    assert result.returncode == 0, result.stderr
    assert desk.bank_path.read_bytes() == after_confirm
    request(desk.control, {"cmd": "undo", "review": confirmed, "who": "carl"})
    assert desk.bank_path.read_bytes() == original
    assert SpeakerBank.load(desk.bank_path).threshold("alice") == SpeakerBank.load(DEMO_BANK).threshold("alice")

    listed = json.loads(run_cli("review", "list", "--json", "--connect", desk.control).stdout)["reviews"]
    assert [(r["id"], r["who"], r["verdict"], r["undone_by"]) for r in listed] == [
        (rejected, "bo", "reject", "carl"), (confirmed, "ann", "confirm", "carl")]
    with sqlite3.connect(desk.config.parent / "events.sqlite") as db:  # logged in the event log's database
        assert db.execute("SELECT clip, note FROM reviews WHERE id = ?", (rejected,)).fetchone() == (second.clip, "not her")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"cmd": "review", "id": "../../etc/passwd", "verdict": "confirm"}, "not a clip id"),
        ({"cmd": "review", "id": "20260101-000000-1", "verdict": "confirm"}, "not in the clip store"),
        ({"cmd": "review", "id": "20260101-000000-1", "verdict": "maybe"}, "verdict"),
        ({"cmd": "undo", "review": 99}, "no review with id 99"),
        ({"cmd": "undo", "review": "1"}, "review id"),
        ({"cmd": "clip", "id": "20260101-000000-1"}, "not in the clip store"),
    ],
)
def test_a_bad_review_request_is_refused_and_changes_nothing(desk: Daemon, payload: dict, error: str) -> None:
    before = desk.bank_path.read_bytes()
    with pytest.raises(ControlError, match=error):
        request(desk.control, payload)
    assert desk.bank_path.read_bytes() == before
