"""A real `voicewatch run` in a subprocess on ipc:// endpoints, and a real subscriber to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import yaml
import zmq

from voicewatch.protocol import Event
from voicewatch.shipped import DEMO_RECORDING, DEMO_TRUTH


class Daemon:
    def __init__(self, workdir: Path, config: dict[str, dict] | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        self.ingest = f"ipc://{workdir}/ingest"
        self.events = f"ipc://{workdir}/events"
        self.control = f"ipc://{workdir}/control"
        self.config = workdir / "config.yaml"
        sections: dict[str, dict] = {
            "ingest": {"endpoint": self.ingest},
            "events": {"endpoint": self.events, "heartbeat_s": 0.1, "log_path": str(log_path) if log_path else None},
            "control": {"endpoint": self.control},
            "metrics": {"port": None},
        }
        for name, values in (config or {}).items():
            sections.setdefault(name, {}).update(values)
        self.config.write_text(yaml.safe_dump(sections))
        self.stderr_path = workdir / "core.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voicewatch", "run", "-c", str(self.config)],
            stderr=self._stderr, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.connect(self.events)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.received: list[Event] = []
        if wait:  # a CURVE core's heartbeats reach only key holders
            self.wait_for(lambda e: e.reason == "heartbeat", timeout=120)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 60) -> Event:
        """The first event (from now on) that satisfies `predicate`; fails with the core's stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"core exited with {self.process.returncode}:\n{self.stderr}")
            if self.sub.poll(100):
                event = Event.from_message(self.sub.recv_multipart())
                self.received.append(event)
                if predicate(event):
                    return event
        raise AssertionError(f"no matching event within {timeout} s; core stderr:\n{self.stderr}")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        """Until the core's stderr contains `text` (checked at each heartbeat)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr and time.monotonic() < deadline:
            self.wait_for(lambda e: e.reason == "heartbeat")
        assert text in self.stderr, self.stderr

    def wait_for_eos(self, *streams: str, timeout: float = 120) -> None:
        pending = set(streams)
        while pending:
            event = self.wait_for(lambda e: e.reason == "eos" and e.stream in pending, timeout)
            pending.discard(event.stream)

    def events_of(self, stream: str) -> list[Event]:
        return [e for e in self.received if e.stream == stream]

    def stop(self) -> int:
        """SIGTERM, collect what the core says on the way out, return its exit code."""
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.process.poll() is None and time.monotonic() < deadline:
            if self.sub.poll(100):
                self.received.append(Event.from_message(self.sub.recv_multipart()))
        code = self.process.wait(timeout=5)
        while self.sub.poll(200):
            self.received.append(Event.from_message(self.sub.recv_multipart()))
        self.sub.close(linger=0)
        self._stderr.close()
        return code


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicewatch", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def demo_truth() -> list[dict]:
    return json.loads(DEMO_TRUTH.read_text())["speaker_segments"]


def demo_audio() -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(str(DEMO_RECORDING), dtype="float32")
    return samples, rate


def write_recording(path: Path, parts: list[tuple[float, float] | float], rate_out: int | None = None,
                    channels: int = 1) -> tuple[Path, list[tuple[float, float]]]:
    """A new recording cut from the demo: `(start, end)` pieces of it and `float` seconds of silence.

    Returns the file and, for each piece, where it lies in the new recording.
    """
    audio, rate = demo_audio()
    pieces, spans, t = [], [], 0.0
    for part in parts:
        if isinstance(part, tuple):
            chunk = audio[round(part[0] * rate): round(part[1] * rate)]
            spans.append((t, t + len(chunk) / rate))
        else:
            chunk = np.zeros(round(part * rate), dtype=np.float32)
        pieces.append(chunk)
        t += len(pieces[-1]) / rate
    out = np.concatenate(pieces)
    if rate_out is not None and rate_out != rate:
        import torch
        import torchaudio

        out = torchaudio.functional.resample(torch.from_numpy(out), rate, rate_out).numpy()
        rate = rate_out
    if channels > 1:
        out = np.repeat(out[:, None], channels, axis=1)
    soundfile.write(str(path), out, rate, subtype="PCM_16")
    return path, spans
