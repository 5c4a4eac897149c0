"""Evidence clips: the core keeps the audio of every segment it reports, in a bounded store, without ever
making the scoring wait for the disk; `end` events name the clip, and the clip is the recording itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from daemon_harness import Daemon, demo_audio, run_cli
from voicewatch.clipstore import ClipError, ClipInfo, ClipStore, ClipWriter, check_clip_id, decode_flac
from voicewatch.control import request
from voicewatch.plugins.replay import replay
from voicewatch.recentaudio import ClipAudio, RecentAudio, to_int16
from voicewatch.shipped import DEMO_RECORDING
from voicewatch.tail import ClipPlayer
from voicewatch.windows import WindowBuffer

RATE = 16000


def windows_of(samples: np.ndarray, stream: str = "s", pts: float = 0.0) -> list:
    return WindowBuffer(stream, RATE, 2.0, 1.0, pts, None).push(samples)


def test_recent_audio_gives_back_exactly_the_samples_of_a_time_range() -> None:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, RATE * 20).astype(np.float32)
    audio = RecentAudio(tail_s=3.0, max_streams=4)
    for window in windows_of(samples, pts=100.0):
        audio.add(window)
    cut = audio.cut("s", 103.25, 108.5)
    assert cut is not None and cut.start == 103.25 and cut.rate == RATE
    assert np.array_equal(cut.samples, to_int16(samples[round(3.25 * RATE):round(8.5 * RATE)]))
    audio.trim({"s": 110.0})  # what is needed from 110 s on, and at least the last 3 s
    assert audio.cut("s", 103.0, 106.0) is None
    assert audio.cut("s", 110.0, 112.0).samples.size == 2 * RATE


def test_recent_audio_keeps_only_a_short_tail_when_no_segment_needs_more() -> None:
    audio = RecentAudio(tail_s=3.0, max_streams=4)
    for window in windows_of(np.zeros(RATE * 60, np.float32)):
        audio.add(window)
        audio.trim({})
    assert audio.held_samples() <= 4 * RATE  # the tail, rounded up to whole chunks


def test_a_break_starts_a_new_run_and_the_old_one_goes_at_the_next_trim() -> None:
    audio = RecentAudio(tail_s=3.0, max_streams=4)
    for window in windows_of(np.full(RATE * 5, 0.25, np.float32)) + windows_of(np.full(RATE * 5, -0.25, np.float32), pts=50.0):
        audio.add(window)
    assert audio.cut("s", 1.0, 4.0).samples[0] == 8192  # the run before the break is still there
    assert audio.cut("s", 51.0, 53.0).samples[0] == -8192
    audio.trim({})
    assert audio.cut("s", 1.0, 4.0) is None


def info(clip_id: str) -> ClipInfo:
    return ClipInfo(clip_id, "ch1", "alice", RATE, 0.0, 1.0, 0.0, 1.0, 0.0, 2.0, 1.0)


def test_the_store_removes_the_oldest_clips_first_to_keep_its_size_and_age(tmp_path: Path) -> None:
    noise = to_int16(np.random.default_rng(1).uniform(-0.5, 0.5, RATE).astype(np.float32))
    store = ClipStore(tmp_path, max_bytes=10**9, max_age_s=None)
    ids = [store.new_id() for _ in range(4)]
    assert len(set(ids)) == 4 and all(check_clip_id(i) for i in ids)
    size = store.write(info(ids[0]), noise)
    store.max_bytes = round(2.5 * size)
    for clip_id in ids[1:]:
        store.write(info(clip_id), noise)
    assert sorted(p.stem for p in tmp_path.iterdir()) == ids[2:]  # only whole files: no temp files left behind
    assert len(ClipStore(tmp_path, 10**9, None)) == 2  # a new store finds them
    store.max_age_s = 60
    assert store.evict(now=store._index[ids[3]][0] + 61) == ids[2:]
    with pytest.raises(ClipError, match="not in the clip store"):
        store.read(ids[2])


@pytest.mark.parametrize("bad", ["../events", "20261201-180312-1/../../x", "", None, 7, "20261201-180312-1\n",
                                 "٢٠٢٦١٢٠١-180312-1"])
def test_a_clip_id_can_never_name_a_file_outside_the_store(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ClipError, match="not a clip id"):
        ClipStore(tmp_path, 10**9, None).path(bad)  # type: ignore[arg-type]


def test_a_slow_disk_costs_clips_not_time(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, 10**9, None)
    writer = ClipWriter(store, queue_size=2)
    audio = ClipAudio(RATE, 0.0, np.zeros(RATE, np.int16))
    with store._lock:  # the disk is stuck: the writer waits inside its first write
        assert writer.submit(info(store.new_id()), audio)
        deadline = time.monotonic() + 10
        while writer._queue.qsize() and time.monotonic() < deadline:  # until the writer has taken it
            time.sleep(0.01)
        accepted = [writer.submit(info(store.new_id()), audio) for _ in range(5)]
        assert accepted == [True, True, False, False, False] and writer.dropped == 3
    writer.close()
    assert writer.written == 3 and len(list(tmp_path.glob("*.flac"))) == 3


@pytest.fixture
def core(tmp_path: Path):
    daemon = Daemon(tmp_path, config={"clips": {"path": str(tmp_path / "clips")}})
    yield daemon
    if daemon.process.poll() is None:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_each_end_event_names_a_clip_of_its_segment_with_a_second_either_side(core: Daemon, tmp_path: Path) -> None:
    replay([str(DEMO_RECORDING)], core.ingest, ["demo"], speed=None)
    core.wait_for_eos("demo")
    ends = [e for e in core.events_of("demo") if e.type == "end"]
    assert len(ends) == 3 and all(e.clip and e.v == 2 for e in ends)
    recording, rate = demo_audio()
    for end in ends:
        out = tmp_path / f"{end.clip}.flac"
        result = run_cli("clip", end.clip, "-o", str(out), "--connect", core.control)
        assert result.returncode == 0, result.stderr
        clip, samples = decode_flac(out.read_bytes())
        assert (clip.stream, clip.speaker, clip.segment_start, clip.segment_end) == ("demo", "alice", end.start, end.end)
        first = round((end.start - 1.0) * rate) if end.start >= 1.0 else 0
        expected = recording[first:round((end.end + 1.0) * rate)]
        assert np.array_equal(samples, to_int16(expected))  # the recording itself, sample for sample
    status = request(core.control, {"cmd": "status"})["clips"]
    assert status["written"] == 3 and status["dropped"] == status["failed"] == status["missing"] == 0


def test_a_long_segment_keeps_its_beginning_up_to_the_longest_clip(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, config={"clips": {"path": str(tmp_path / "clips"), "max_s": 5.0}})
    try:
        replay([str(DEMO_RECORDING)], daemon.ingest, ["demo"], speed=None)
        daemon.wait_for_eos("demo")
    finally:
        assert daemon.stop() == 0
    second = [e for e in daemon.received if e.type == "end"][1]
    assert second.end - second.start > 10
    clip, samples = decode_flac((tmp_path / "clips" / f"{second.clip}.flac").read_bytes())
    recording, rate = demo_audio()
    assert (clip.start, clip.end) == (second.start - 1.0, second.start + 4.0)
    assert np.array_equal(samples, to_int16(recording[round(clip.start * rate):round(clip.end * rate)]))


def test_tail_play_fetches_and_plays_each_clip_as_its_segment_ends(core: Daemon) -> None:
    played: list[tuple[int, int]] = []
    done = threading.Event()

    def sink(samples: np.ndarray, rate: int) -> None:  # the sound device's place
        played.append((len(samples), rate))
        if len(played) == 3:
            done.set()

    player = ClipPlayer(core.control, sink=sink)
    show = player.wrap(lambda _event: True)
    replay([str(DEMO_RECORDING)], core.ingest, ["demo"], speed=None)
    core.wait_for_eos("demo")
    for event in core.events_of("demo"):
        show(event)
    assert done.wait(30)
    player.close()
    ends = [e for e in core.events_of("demo") if e.type == "end"]
    length = len(demo_audio()[0]) / RATE
    assert played == [(round((min(e.end + 1, length) - max(e.start - 1, 0)) * RATE), RATE) for e in ends]


def test_clip_to_stdout_and_a_missing_clip(core: Daemon) -> None:
    replay([str(DEMO_RECORDING)], core.ingest, ["demo"], speed=None)
    core.wait_for_eos("demo")
    clip = next(e.clip for e in core.events_of("demo") if e.type == "end")
    raw = subprocess.run([sys.executable, "-m", "voicewatch", "clip", clip, "-o", "-", "--connect", core.control],
                         capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout[:4] == b"fLaC"
    assert json.loads(soundfile.SoundFile(io.BytesIO(raw.stdout)).comment)["id"] == clip
    missing = run_cli("clip", "20200101-000000-1", "--connect", core.control)
    assert missing.returncode == 2 and "not in the clip store" in missing.stderr
