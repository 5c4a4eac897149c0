"""The live source: a microphone or line input (PortAudio via sounddevice) → ingest frames.

PortAudio calls `callback` on its own thread; the callback only copies the block into a bounded
queue (counting overflows and blocks it had to drop) and the sender thread blocks on that queue
until `finish` puts the end marker after the stream has stopped, so neither side polls or spins.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voicewatch.cliargs import endpoint, positive_float
from voicewatch.plugins.publisher import Publisher
from voicewatch.protocol import MAX_RATE, MIN_RATE
from voicewatch.security import add_client_arguments, client_from_args
from voicewatch.sourceframes import FrameEncoder

_LOG = logging.getLogger(__name__)


class LiveSourceError(ValueError):
    """PortAudio or the device cannot be used: the CLI prints the message and exits with 2."""


def load_sounddevice() -> Any:
    """sounddevice, or a clear error naming the package to install."""
    try:
        import sounddevice
    except OSError as exc:  # raised when the PortAudio shared library is missing
        raise LiveSourceError(f"PortAudio is not installed ({exc}): apt-get install libportaudio2") from None
    except ImportError:
        raise LiveSourceError("sounddevice is not installed: pip install sounddevice") from None
    return sounddevice


@dataclasses.dataclass
class Counters:
    overflows: int = 0
    """Blocks PortAudio reported as overflowed (audio lost before it reached us)."""
    dropped_blocks: int = 0
    """Blocks dropped because the sender was behind and the queue was full."""
    frames_sent: int = 0
    frames_dropped: int = 0
    """Frames the core could not take at once (behind or away): dropped, so the core reports a gap."""


class LiveCapture:
    """Owns the input stream and the queue between PortAudio's thread and the sender."""

    def __init__(self, open_stream: Callable[..., Any], rate: int, channels: int, device: Any,
                 block_s: float = 0.02, queue_s: float = 5.0) -> None:
        self.counters = Counters()
        self.blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max(1, int(queue_s / block_s)))
        self.stream = open_stream(device=device, samplerate=rate, channels=channels, dtype="int16",
                                  blocksize=int(rate * block_s), callback=self.callback)

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and getattr(status, "input_overflow", False):
            self.counters.overflows += 1
        try:
            self.blocks.put_nowait(indata.copy())
        except queue.Full:
            self.counters.dropped_blocks += 1

    def finish(self) -> None:
        """After the stream has stopped: the sender sends what is queued, then the end of stream."""
        self.blocks.put(None)


def negotiate_rate(sd: Any, device: Any, rate: int | None, channels: int) -> int:
    """The requested rate if the device takes it, else the device's default (within the protocol's rates)."""
    info = sd.query_devices(device, "input")  # raises ValueError for an unknown device
    candidates = [r for r in (rate, int(info["default_samplerate"]), 48000, 16000) if r]
    for candidate in candidates:
        if not MIN_RATE <= candidate <= MAX_RATE:
            continue
        try:
            sd.check_input_settings(device=device, samplerate=candidate, channels=channels, dtype="int16")
            return candidate
        except Exception:  # PortAudio says no in several ways
            continue
    raise LiveSourceError(f"device {device!r} accepts none of the rates {candidates} with {channels} channel(s)")


def send(capture: LiveCapture, publisher: Publisher, stream: str, rate: int, channels: int, chunk_s: float) -> None:
    """Group blocks into `chunk_s` frames stamped with wall-clock time and send them until `finish`; a frame the core
    cannot take at once is dropped and counted by the publisher, never waited for."""
    encoder = FrameEncoder(stream, rate, channels, "s16le", wall=time.time())
    pending: list[np.ndarray] = []
    size = int(rate * chunk_s)
    while (block := capture.blocks.get()) is not None:  # blocks until PortAudio delivers
        pending.append(block)
        if sum(len(p) for p in pending) >= size:
            if publisher.send(encoder.encode(np.concatenate(pending))):
                capture.counters.frames_sent += 1
            else:
                capture.counters.frames_dropped += 1
            pending = []
    publisher.send_last(encoder.encode(np.concatenate(pending) if pending else np.zeros((0, channels), "<i2"), eos=True))


class LiveSource:
    name = "live"
    help = "capture a microphone or line input (PortAudio) and feed it to a core"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", help="input device name or index (default: the system's default input)")
        parser.add_argument("--rate", type=int, help="sample rate; the device's default when it refuses this one")
        parser.add_argument("--channels", type=int, default=1)
        parser.add_argument("--stream", default="mic", help="stream name in events (default: mic)")
        parser.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", type=endpoint)
        parser.add_argument("--chunk-ms", type=positive_float, default=100.0)
        parser.add_argument("--list-devices", action="store_true", help="print the input devices and exit")
        add_client_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        sd = load_sounddevice()
        if args.list_devices:
            print(sd.query_devices())
            return 0
        device = int(args.device) if args.device and args.device.isdigit() else args.device
        try:
            rate = negotiate_rate(sd, device, args.rate, args.channels)
        except ValueError as exc:  # sounddevice's word for an unknown device
            raise LiveSourceError(f"input device {device!r}: {exc} (voicewatch source live --list-devices)") from None
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        curve = client_from_args(args.curve_server_key, args.curve_client_key)
        publisher = Publisher(args.connect, lossless=False, timeout_s=2.0, curve=curve)
        capture = LiveCapture(sd.InputStream, rate, args.channels, device)
        sender = threading.Thread(target=send, args=(capture, publisher, args.stream, rate, args.channels,
                                                     args.chunk_ms / 1000), name="live-sender")
        sender.start()
        with capture.stream:
            _LOG.info("capturing %s at %d Hz, %d channel(s) as stream %s", device or "default input", rate,
                      args.channels, args.stream)
            stop.wait()  # until SIGTERM/SIGINT
        capture.finish()
        sender.join()
        _LOG.info("live source stopped: %s", capture.counters)
        publisher.close()
        return 0
