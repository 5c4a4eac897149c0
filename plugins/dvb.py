"""The DVB source: a transport stream (file, -, udp://, http(s)://) → one ingest stream per service.

Wiring only: input (`tsinput`) → PSI (`tspsi`) → selection (`tsselect`) → decoding (`tsdecode`)
→ frames (`Outlet`, below) → `Publisher`. Every clock restart of a track (PTS jump, PMT or codec
change, reconnect) skips one `seq`, so the core ends open segments, emits a `gap` and restarts its
windows at the new `pts`. Network inputs reconnect with exponential backoff and jitter for ever or
`--retries` times. The core hears of it in frames without audio that carry a `status`:
`reconnecting` when the input fails, `recovered` with the first audio after it, `input_dead` when
the source gives up (then end of stream).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import signal
import threading
import time

import numpy as np

from voicewatch.cliargs import endpoint, positive_float
from voicewatch.plugins.publisher import Publisher
from voicewatch.plugins.tsdecode import Chunk, DecodeCounters, TrackDecoder, decode
from voicewatch.plugins.tsinput import Backoff, TappedReader, is_live, is_network, open_input
from voicewatch.plugins.tspsi import PsiMonitor
from voicewatch.plugins.tsselect import POLICIES, SelectionError, ServiceSpec, TrackPolicy, plan
from voicewatch.security import add_client_arguments, client_from_args
from voicewatch.sourceframes import FrameEncoder

_LOG = logging.getLogger(__name__)
WALL_MODES = ("auto", "tdt", "receive", "none")
REANCHOR_S = 1.0
"""A DVB time this far from the wall clock the frames carry moves it (TDT has 1 s resolution)."""


class SourceError(ValueError):
    """A source that cannot run: the CLI prints the message and exits with 2."""


class SourceStopped(Exception):
    """SIGTERM/SIGINT: raised out of a blocking read so the source ends its streams and exits."""


def require_pyav() -> None:
    if importlib.util.find_spec("av") is None:
        raise SourceError("voicewatch source dvb needs PyAV (FFmpeg): pip install 'voicewatch[dvb]'")


class Outlet:
    """One stream's chunks → ingest frames, with a skipped `seq` at every clock restart."""

    def __init__(self, stream: str, wall_mode: str) -> None:
        self.stream, self.wall_mode = stream, wall_mode
        self.encoder: FrameEncoder | None = None

    def frame(self, chunk: Chunk, dvb_wall: float | None) -> list[bytes]:
        encoder = self.encoder
        channels = chunk.samples.shape[1]
        if encoder is None or chunk.restart or (encoder.rate, encoder.channels) != (chunk.rate, channels):
            wall = dvb_wall if dvb_wall is not None else time.time() if self.wall_mode in ("receive", "tdt") else None
            seq = 0 if encoder is None else encoder.seq + 1
            encoder = self.encoder = FrameEncoder(self.stream, chunk.rate, channels, "s16le", pts=chunk.pts, wall=wall)
            encoder.seq = seq
        elif dvb_wall is not None:
            predicted = None if encoder.wall0 is None else encoder.wall0 + encoder.samples / encoder.rate
            if predicted is None or abs(predicted - dvb_wall) > REANCHOR_S:
                _LOG.info("%s: wall clock anchored on the DVB time (moved by %s s)", self.stream,
                          "-" if predicted is None else f"{dvb_wall - predicted:+.1f}")
                encoder.wall0 = dvb_wall - encoder.samples / encoder.rate
        return encoder.encode(chunk.samples)

    def status(self, status: str) -> list[bytes] | None:
        if self.encoder is None:
            return None
        return self.encoder.encode(np.zeros((0, self.encoder.channels), "<i2"), status=status)

    def end(self) -> list[bytes] | None:
        if self.encoder is None:
            return None
        return self.encoder.encode(np.zeros((0, self.encoder.channels), "<i2"), eos=True)


@dataclasses.dataclass
class DvbFeed:
    """The input loop: open, decode, publish; reconnect network inputs until stopped or out of retries."""

    url: str
    specs: list[ServiceSpec]
    policy: TrackPolicy
    stream: str
    publisher: Publisher
    chunk_s: float = 0.1
    stall_s: float = 10.0
    retries: int = -1
    wall_mode: str = "auto"
    backoff: Backoff = dataclasses.field(default_factory=Backoff)

    def __post_init__(self) -> None:
        self.monitor = PsiMonitor()
        self.counters = DecodeCounters()
        self.decoders: dict[str, TrackDecoder] = {}
        self.outlets: dict[str, Outlet] = {}
        self.reconnects = 0
        self.failing = False
        """The input failed and has not delivered audio since (the core was told `reconnecting`)."""
        if self.wall_mode == "auto":
            self.wall_mode = "tdt" if is_live(self.url) else "none"

    def run(self) -> None:
        try:
            while True:
                try:
                    self._session()
                    if not is_network(self.url):
                        return
                    _LOG.warning("%s ended", self.url)
                except (OSError, EOFError, _av_errors()) as exc:
                    if not is_network(self.url):
                        raise SourceError(f"{self.url}: {exc}") from None
                    _LOG.warning("%s failed: %s", self.url, exc)
                self._wait_to_reconnect()
        except SourceError:
            self._tell_core("input_dead")
            raise
        finally:
            self._end_streams()
            _LOG.info("dvb source done: %s", json.dumps(self.summary()))

    def summary(self) -> dict[str, object]:
        return {"ts": dataclasses.asdict(self.monitor.counters), "decode": dataclasses.asdict(self.counters),
                "reconnects": self.reconnects, "frames_sent": self.publisher.sent,
                "frames_dropped": self.publisher.dropped}

    def _session(self) -> None:
        raw = open_input(self.url, self.stall_s)
        try:
            reader = TappedReader(raw, self.monitor)
            strict = [True]

            def current() -> dict:
                tracks = plan(self.monitor, self.specs, self.policy, self.stream, strict=strict[0])
                strict[0] = False
                return tracks

            for chunk in decode(reader, current, self.chunk_s, self.counters, self.decoders):
                self.backoff.reset()
                if self.failing:
                    self.failing = False
                    self._tell_core("recovered")
                outlet = self.outlets.setdefault(chunk.stream, Outlet(chunk.stream, self.wall_mode))
                self.publisher.send(outlet.frame(chunk, self._dvb_wall(chunk)))
        finally:
            raw.close()

    def _dvb_wall(self, chunk: Chunk) -> float | None:
        anchor = self.monitor.anchor
        if self.wall_mode != "tdt" or anchor is None or chunk.pid not in anchor.pts:
            return None
        return anchor.utc + chunk.pts - self.decoders[chunk.stream].clock.unwrap(anchor.pts[chunk.pid]) / 90000

    def _wait_to_reconnect(self) -> None:
        if 0 <= self.retries <= self.reconnects:
            raise SourceError(f"giving up on {self.url} after {self.retries} reconnection(s)")
        if not self.failing:
            self.failing = True
            self._tell_core("reconnecting")
        delay = self.backoff.next_delay()
        self.reconnects += 1
        _LOG.info("reconnecting to %s in %.1f s (attempt %d)", self.url, delay, self.reconnects)
        time.sleep(delay)  # backoff between attempts; SIGTERM interrupts it

    def _tell_core(self, status: str) -> None:
        for outlet in self.outlets.values():
            frame = outlet.status(status)
            if frame is not None:
                self.publisher.send_last(frame)

    def _end_streams(self) -> None:
        """End of input (or of the source): the core closes these streams' open segments."""
        for outlet in self.outlets.values():
            last = outlet.end()
            if last is not None:
                self.publisher.send_last(last)


def _av_errors() -> type[Exception]:
    import av

    return av.error.FFmpegError


class DvbSource:
    name = "dvb"
    help = "decode MPEG-TS audio (file, -, udp://, http(s)://; tvheadend, SAT>IP) and feed it to a core"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("input", metavar="INPUT", help="TS file, - for stdin, udp://HOST:PORT, http(s)://URL")
        parser.add_argument("--service", action="append", default=[], metavar="SERVICE[=STREAM]",
                            help="service id or name to publish, as stream STREAM; repeat for several services "
                                 "of the multiplex (default: the first service with audio, as --stream)")
        parser.add_argument("--stream", default="dvb", help="stream name without --service (default: dvb)")
        parser.add_argument("--pid", type=lambda v: int(v, 0), help="audio PID to decode")
        parser.add_argument("--language", default="", metavar="LANG[,LANG…]",
                            help="ISO-639-2 audio languages in order of preference, e.g. deu,ger,eng")
        parser.add_argument("--on-track-loss", choices=POLICIES, default="next",
                            help="when the chosen track leaves the PMT: take the best remaining one (next) or "
                                 "send nothing until it returns (wait); default next")
        parser.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", type=endpoint,
                            help="the core's ingest endpoint (default %(default)s)")
        parser.add_argument("--chunk-ms", type=positive_float, default=100.0, help="frame length sent to the core (default 100)")
        parser.add_argument("--stall", type=positive_float, default=10.0, metavar="SECONDS",
                            help="a network input silent this long is dead and reconnected (default 10)")
        parser.add_argument("--retries", type=int, default=-1,
                            help="network inputs: reconnections before giving up (default -1 = for ever)")
        parser.add_argument("--wall", choices=WALL_MODES, default="auto",
                            help="wall-clock time in frames: DVB TDT/TOT else receive time (tdt), receive time, "
                                 "or none; auto = tdt for live inputs, none for files (old wall times make "
                                 "the core shed windows as late unless processing.max_lag_s is null)")
        parser.add_argument("--timeout", type=positive_float, default=60.0,
                            help="files: give up when the core takes no frame for this many seconds")
        add_client_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        require_pyav()
        specs = [ServiceSpec.parse(s) for s in args.service]
        languages = tuple(lang.strip() for lang in args.language.split(",") if lang.strip())
        policy = TrackPolicy(args.pid, languages, args.on_track_loss)
        curve = client_from_args(args.curve_server_key, args.curve_client_key)
        publisher = Publisher(args.connect, lossless=not is_live(args.input), timeout_s=args.timeout, curve=curve)
        feed = DvbFeed(args.input, specs, policy, args.stream, publisher, args.chunk_ms / 1000, args.stall,
                       args.retries, args.wall)
        stopping = threading.Event()

        def stop(*_: object) -> None:
            if not stopping.is_set():
                stopping.set()
                raise SourceStopped

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        try:
            feed.run()
        except SourceStopped:
            _LOG.info("stopped by signal")
        except SelectionError as exc:
            raise SourceError(str(exc)) from None
        finally:
            publisher.close()
        return 0
