"""The live source without a sound card: a fake PortAudio stream drives the real capture and sender, and
the real PortAudio captures from a virtual ALSA device (a test asoundrc whose PCM reads a file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import zmq

from daemon_harness import Daemon, demo_audio, demo_truth
from voicewatch.plugins.live import LiveCapture, send
from voicewatch.plugins.publisher import Publisher
from voicewatch.scan import segments


class FakeInputStream:
    """Calls the callback from its own thread with blocks of a recording, like PortAudio does."""

    def __init__(self, device, samplerate, channels, dtype, blocksize, callback, audio=None, overflow_every=0):
        self.callback, self.blocksize, self.channels = callback, blocksize, channels
        self.audio = audio if audio is not None else np.zeros((samplerate, channels), dtype=np.int16)
        self.overflow_every = overflow_every
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._play)

    def _play(self) -> None:
        for index, start in enumerate(range(0, len(self.audio) - self.blocksize + 1, self.blocksize)):
            status = SimpleNamespace(input_overflow=bool(self.overflow_every and index % self.overflow_every == 0))
            self.callback(self.audio[start:start + self.blocksize], self.blocksize, None, status)
            if index % 50 == 0:
                threading.Event().wait(0.001)  # let the sender breathe, as a real device would
        self.done.set()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._thread.join()


def demo_int16() -> np.ndarray:
    audio, rate = demo_audio()
    assert rate == 16000
    return (audio * 32767).astype(np.int16).reshape(-1, 1)


def test_captured_audio_reaches_the_core_and_the_voice_is_found(tmp_path: Path) -> None:
    core = Daemon(tmp_path)
    try:
        audio = demo_int16()
        capture = LiveCapture(lambda **kw: FakeInputStream(audio=audio, **kw), 16000, 1, None, queue_s=600)
        publisher = Publisher(core.ingest, lossless=False, timeout_s=5.0)
        assert publisher.wait_connected(10)  # a live publisher drops what it sends before the core is there
        sender = threading.Thread(target=send, args=(capture, publisher, "mic", 16000, 1, 0.1))
        sender.start()
        with capture.stream as stream:
            assert stream.done.wait(60)
        capture.finish()  # the stream has stopped: the sender empties the queue, then ends the stream
        sender.join(60)
        publisher.close()
        core.wait_for_eos("mic")
    finally:
        assert core.stop() == 0
    truth = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] == "alice"]
    found = [(s.start, s.end) for s in segments(core.received) if s.stream == "mic"]
    assert len(found) == len(truth)
    assert all(abs(a - c) <= 1.05 and abs(b - d) <= 1.25 for (a, b), (c, d) in zip(found, truth, strict=True))
    assert capture.counters.frames_sent > 0 and capture.counters.dropped_blocks == capture.counters.frames_dropped == 0
    assert all(e.wall_start is not None for e in core.received if e.stream == "mic" and e.type == "end")


def test_overflows_and_a_full_queue_are_counted_not_hidden() -> None:
    audio = np.zeros((16000 * 2, 1), dtype=np.int16)
    capture = LiveCapture(lambda **kw: FakeInputStream(audio=audio, overflow_every=10, **kw), 16000, 1, None,
                          block_s=0.02, queue_s=0.2)
    with capture.stream as stream:
        stream.done.wait(10)
    assert capture.counters.overflows == 10  # 100 blocks, every tenth flagged
    assert capture.counters.dropped_blocks == 100 - capture.blocks.maxsize  # nobody drained the queue


def test_missing_portaudio_names_the_package_to_install(tmp_path: Path) -> None:
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "voicewatch", "source", "live"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2 and "apt-get install libportaudio2" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_device_is_a_clear_error() -> None:
    result = subprocess.run([sys.executable, "-m", "voicewatch", "source", "live", "--device", "no-such-device-xyz"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "input device 'no-such-device-xyz'" in result.stderr
    assert "--list-devices" in result.stderr and "Traceback" not in result.stderr


def virtual_capture_home(tmp_path: Path, audio: np.ndarray) -> dict[str, str]:
    """An environment whose ALSA knows a capture PCM `voicewatch_test` that plays `audio` (s16 mono).

    ALSA's `file` plugin reads capture data from `infile`; its `null` slave sets no pace, so the
    device delivers as fast as it is read, and from the start of the file again at its end."""
    audio.astype("<i2").tofile(tmp_path / "capture.raw")
    (tmp_path / ".asoundrc").write_text(
        'pcm.voicewatch_test {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
        f'  infile "{tmp_path / "capture.raw"}"\n  format "raw"\n'
        '  hint { show on description "voicewatch test capture" }\n}\n')
    return {**os.environ, "HOME": str(tmp_path)}


def test_a_virtual_alsa_device_is_captured_through_portaudio_and_stopped_cleanly(tmp_path: Path) -> None:
    t = np.arange(16000 * 3) / 16000
    env = virtual_capture_home(tmp_path, np.sin(2 * np.pi * 440 * t) * 8000)
    endpoint = f"ipc://{tmp_path}/ingest"
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.bind(endpoint)
    source = subprocess.Popen([sys.executable, "-m", "voicewatch", "source", "live", "--device", "voicewatch_test",
                               "--rate", "16000", "--stream", "alsa", "--connect", endpoint],
                              stderr=subprocess.PIPE, text=True, env=env)
    frames: list[tuple[dict, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(frames) < 30 and time.monotonic() < deadline:  # 3 s of audio
            if pull.poll(100):
                _, header, pcm = pull.recv_multipart()
                frames.append((json.loads(header), pcm))
        source.send_signal(signal.SIGTERM)
        while not frames[-1][0].get("eos") and pull.poll(10_000):
            _, header, pcm = pull.recv_multipart()
            frames.append((json.loads(header), pcm))
        _, stderr = source.communicate(timeout=30)
    finally:
        source.kill()
        pull.close(linger=0)
    assert source.returncode == 0 and "live source stopped" in stderr, stderr
    assert frames[0][0]["rate"] == 16000 and frames[0][0]["channels"] == 1 and frames[-1][0]["eos"] is True
    assert [h["seq"] for h, _ in frames] == list(range(len(frames)))
    captured = np.frombuffer(b"".join(pcm for _, pcm in frames[:30]), "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(captured)) ** 2
    tone = round(440 * len(captured) / 16000)
    assert spectrum[tone - 3:tone + 4].sum() / spectrum.sum() > 0.9  # the file's tone, not silence or noise
