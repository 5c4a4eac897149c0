"""The replay source: recordings → ingest frames, in real time or as fast as the core takes them.

Several files play at once as separate streams, interleaved frame by frame. `--speed max` loses
nothing: PUSH blocks at the high-water mark until the core has room.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from voicewatch.cliargs import endpoint, positive_float
from voicewatch.plugins.publisher import Publisher
from voicewatch.protocol import FrameHeader
from voicewatch.security import CurveClient, add_client_arguments, client_from_args
from voicewatch.sourceframes import file_frames

_LOG = logging.getLogger(__name__)


def stream_names(files: Sequence[str], stream: str | None) -> list[str]:
    """One stream per file: `--stream` (suffixed -2, -3… for more files) or the file's stem."""
    if stream is not None:
        return [stream if i == 0 else f"{stream}-{i + 1}" for i in range(len(files))]
    return [re.sub(r"[^A-Za-z0-9_-]", "_", Path(f).stem)[:64] or "stream" for f in files]


def parse_speed(text: str) -> float | None:
    """`max` → None (no pacing); otherwise a positive factor of real time."""
    if text == "max":
        return None
    speed = float(text)
    if speed <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0 or 'max'")
    return speed


def interleave(files: Sequence[str], streams: Sequence[str], chunk_s: float,
               wall: float | None = None) -> Iterator[tuple[float, list[bytes]]]:
    """(stream time of the frame, frame) from all files, in stream-time order; with `wall`, frames carry the
    wall-clock time of a recording that began then."""
    sources = [file_frames(f, s, chunk_s, wall=wall) for f, s in zip(files, streams, strict=True)]
    pending = [next(src, None) for src in sources]
    while any(p is not None for p in pending):
        times = [FrameHeader.from_json(p[1]).pts if p is not None else float("inf") for p in pending]
        index = min(range(len(times)), key=times.__getitem__)
        yield times[index], pending[index]  # type: ignore[misc]
        pending[index] = next(sources[index], None)


def replay(files: Sequence[str], endpoint: str, streams: Sequence[str], speed: float | None = 1.0,
           chunk_s: float = 0.1, timeout_s: float = 60.0, curve: CurveClient | None = None,
           wall: float | None = None) -> int:
    """Send every frame of `files` to the core at `endpoint`; returns the number of frames sent."""
    publisher = Publisher(endpoint, lossless=True, timeout_s=timeout_s, curve=curve)  # waits at the high-water mark
    sent = 0
    started = time.monotonic()
    try:
        for pts, frame in interleave(files, streams, chunk_s, wall):
            if speed is not None:
                delay = started + pts / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing to the recording's clock, not waiting for a result
            publisher.send(frame)
            sent += 1
    finally:
        publisher.close()
    _LOG.info("replayed %d frames of %d file(s) in %.1f s", sent, len(files), time.monotonic() - started)
    return sent


class ReplaySource:
    name = "replay"
    help = "push WAV/FLAC (or any FFmpeg-decodable) recordings into a core as ingest frames"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="recordings; each becomes one stream")
        parser.add_argument("--stream", help="stream name (default: the file name); -2, -3… are added for more files")
        parser.add_argument("--speed", type=parse_speed, default=1.0,
                            help="1.0 = real time, 4 = four times faster, max = as fast as the core takes frames")
        parser.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", type=endpoint,
                            help="the core's ingest endpoint (default %(default)s)")
        parser.add_argument("--chunk-ms", type=positive_float, default=100.0, help="frame length in ms (default 100)")
        parser.add_argument("--timeout", type=positive_float, default=60.0,
                            help="give up when the core takes no frame for this many seconds")
        parser.add_argument("--wall-clock", action="store_true",
                            help="stamp frames with the wall-clock time of a recording that begins now, as a live "
                                 "source would (events then carry wall times; the timeline page places them there)")
        add_client_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        streams = stream_names(args.files, args.stream)
        curve = client_from_args(args.curve_server_key, args.curve_client_key)
        replay(args.files, args.connect, streams, args.speed, args.chunk_ms / 1000, args.timeout, curve,
               wall=time.time() if args.wall_clock else None)
        return 0
