"""The DVB source: an MPEG transport stream (file, stdin, udp://, http(s)://) → ingest frames.

PyAV (FFmpeg) demuxes and decodes whatever the broadcast carries (MPEG-1/2 Layer II, AC-3, E-AC-3,
AAC in ADTS or LATM). The stream clock counts samples; a jump in the decoded PTS (cut, splice,
reconnect) becomes a skipped `seq` and a new `pts`, so the core reports a gap and restarts its
windows. Undecodable packets are skipped and counted. Network inputs reconnect with exponential
backoff and jitter.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import zmq

from voicewatch.security import add_client_arguments, client_from_args
from voicewatch.sourceframes import FrameEncoder

_LOG = logging.getLogger(__name__)
PTS_WRAP = 1 << 33
"""MPEG-TS presentation timestamps are 33-bit counters of a 90 kHz clock."""
JUMP_S = 0.5
"""A PTS further than this from where the sample count says we are is a discontinuity."""


class PtsClock:
    """Unwraps 33-bit PTS values (in 90 kHz ticks) into monotonic seconds."""

    def __init__(self) -> None:
        self._offset = 0
        self._last: int | None = None

    def seconds(self, pts: int) -> float:
        if self._last is not None and pts + self._offset < self._last - PTS_WRAP // 2:
            self._offset += PTS_WRAP
        self._last = pts + self._offset
        return self._last / 90000


@dataclasses.dataclass
class Counters:
    corrupt_packets: int = 0
    discontinuities: int = 0
    reconnects: int = 0
    frames_sent: int = 0


@dataclasses.dataclass(frozen=True)
class Selection:
    pid: int | None = None
    language: str | None = None


def pick_audio(container, selection: Selection):  # noqa: ANN001, ANN201 - PyAV objects
    """The audio stream chosen by PID or ISO-639 language; else the first one."""
    streams = list(container.streams.audio)
    if not streams:
        raise ValueError("the input carries no audio stream")
    if selection.pid is not None:
        matches = [s for s in streams if s.id == selection.pid]
        if not matches:
            raise ValueError(f"no audio stream with PID {selection.pid}; audio PIDs: {[s.id for s in streams]}")
        return matches[0]
    if selection.language is not None:
        matches = [s for s in streams if (s.language or s.metadata.get("language")) == selection.language]
        if not matches:
            _LOG.warning("no audio stream in language %r; taking PID %d", selection.language, streams[0].id)
        return (matches or streams)[0]
    return streams[0]


def decoded_chunks(url: str, selection: Selection, counters: Counters, chunk_s: float
                   ) -> Iterator[tuple[float, int, np.ndarray]]:
    """(stream seconds from PTS, rate, interleaved int16 [n, channels]) in chunks of about `chunk_s`."""
    import av

    source = sys.stdin.buffer if url == "-" else url
    options = {"timeout": "5000000"} if "://" in url else {}
    with av.open(source, format="mpegts" if url == "-" else None, options=options) as container:
        stream = pick_audio(container, selection)
        _LOG.info("decoding PID %d (%s, %s Hz, %s)", stream.id, stream.codec_context.name,
                  stream.codec_context.sample_rate, stream.language or "no language")
        clock, resampler = PtsClock(), None
        pending: list[np.ndarray] = []
        pending_start, rate = 0.0, 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                counters.corrupt_packets += 1
                continue
            for frame in frames:
                if resampler is None or frame.sample_rate != rate:
                    rate = frame.sample_rate if 8000 <= frame.sample_rate <= 48000 else 48000
                    layout = frame.layout.name if len(frame.layout.channels) <= 8 else "stereo"
                    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
                start = clock.seconds(frame.pts) if frame.pts is not None else None
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1, len(out.layout.channels))
                    if not pending and start is not None:
                        pending_start = start
                    pending.append(samples)
                if sum(len(p) for p in pending) >= chunk_s * rate:
                    yield pending_start, rate, np.concatenate(pending)
                    pending = []
        if pending:
            yield pending_start, rate, np.concatenate(pending)


class DvbSource:
    name = "dvb"
    help = "decode an MPEG-TS (file, -, udp://, http(s)://) and feed its audio to a core"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("input", metavar="INPUT", help="TS file, - for stdin, udp://HOST:PORT, http(s)://URL")
        parser.add_argument("--stream", default="dvb", help="stream name in events (default: dvb)")
        parser.add_argument("--pid", type=int, help="audio PID to decode")
        parser.add_argument("--language", help="ISO-639-2 audio language, e.g. deu (default: the first audio track)")
        parser.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                            help="the core's ingest endpoint (default %(default)s)")
        parser.add_argument("--chunk-ms", type=float, default=100.0, help="frame length sent to the core")
        parser.add_argument("--retries", type=int, default=-1,
                            help="network inputs: reconnect attempts before giving up (-1 = forever)")
        parser.add_argument("--timeout", type=float, default=60.0, help="give up when the core takes no frame")
        add_client_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        try:
            import av  # noqa: F401 - only to say clearly when it is missing
        except ImportError:
            print("voicewatch source dvb needs PyAV (FFmpeg): pip install 'voicewatch[dvb]'", file=sys.stderr)
            return 2
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.SNDTIMEO, int(args.timeout * 1000))
        push.setsockopt(zmq.IMMEDIATE, 1)
        curve = client_from_args(args.curve_server_key, args.curve_client_key)
        if curve is not None:
            curve.secure(push)
        push.connect(args.connect)
        counters = Counters()
        try:
            return feed(args, push, counters, stop)
        finally:
            _LOG.info("dvb source done: %s", counters)
            push.close(linger=int(args.timeout * 1000))


def feed(args: argparse.Namespace, push: zmq.Socket, counters: Counters, stop: threading.Event) -> int:
    network = "://" in args.input
    selection = Selection(args.pid, args.language)
    encoder: FrameEncoder | None = None
    expected = 0.0
    attempt, code = 0, 0
    while not stop.is_set():
        try:
            for start, rate, samples in decoded_chunks(args.input, selection, counters, args.chunk_ms / 1000):
                attempt = 0
                if encoder is None or encoder.rate != rate or encoder.channels != samples.shape[1]:
                    encoder = FrameEncoder(args.stream, rate, samples.shape[1], "s16le", pts=start, wall=time.time())
                elif abs(start - expected) > JUMP_S:
                    counters.discontinuities += 1
                    _LOG.warning("PTS jump of %.2f s: restarting the stream clock", start - expected)
                    seq = encoder.seq + 1  # a skipped seq: the core reports a gap and restarts its windows
                    encoder = FrameEncoder(args.stream, rate, samples.shape[1], "s16le", pts=start, wall=time.time())
                    encoder.seq = seq
                expected = start + len(samples) / rate
                push.send_multipart(encoder.encode(samples))
                counters.frames_sent += 1
                if stop.is_set():
                    break
        except (OSError, ValueError) as exc:
            if not network or isinstance(exc, ValueError) and "PID" in str(exc):
                print(f"voicewatch source dvb: error: {exc}", file=sys.stderr)
                return 2
            _LOG.warning("input %s failed: %s", args.input, exc)
        except zmq.Again:
            print(f"voicewatch source dvb: the core at {args.connect} accepted no frame for {args.timeout:.0f} s",
                  file=sys.stderr)
            return 1
        if not network:
            break
        attempt += 1
        counters.reconnects += 1
        if 0 <= args.retries < attempt:
            print(f"voicewatch source dvb: giving up on {args.input} after {args.retries} retries", file=sys.stderr)
            code = 1
            break
        delay = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # backoff with jitter
        _LOG.info("reconnecting to %s in %.1f s", args.input, delay)
        stop.wait(delay)
    if encoder is not None:  # end of stream: the core closes this stream's open segments
        push.send_multipart(encoder.encode(np.zeros((0, encoder.channels), dtype="<i2"), eos=True))
    return code
