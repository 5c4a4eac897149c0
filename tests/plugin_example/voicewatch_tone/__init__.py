"""A third-party source for voicewatch: `seconds` of a sine tone, sent as ingest frames.

Installed, it appears as `voicewatch source tone`; docs/plugins.md walks through it.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from voicewatch.plugins.publisher import Publisher
from voicewatch.sourceframes import FrameEncoder

_LOG = logging.getLogger(__name__)


class ToneSource:
    name = "tone"
    help = "send a sine tone to a core (an example of a third-party source)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT")
        parser.add_argument("--stream", default="tone")
        parser.add_argument("--seconds", type=float, default=3.0)
        parser.add_argument("--hz", type=float, default=440.0)

    def run(self, args: argparse.Namespace) -> int:
        rate = 16000
        t = np.arange(round(args.seconds * rate)) / rate
        samples = (np.sin(2 * np.pi * args.hz * t) * 0.3 * 32767).astype("<i2").reshape(-1, 1)
        publisher = Publisher(args.connect, lossless=True, timeout_s=10)  # waits for the core, loses nothing
        encoder = FrameEncoder(args.stream, rate, 1, "s16le")  # numbers frames, stamps pts from sample counts
        step = rate // 10  # 100 ms frames
        for start in range(0, len(samples), step):
            publisher.send(encoder.encode(samples[start:start + step], eos=start + step >= len(samples)))
        publisher.close()  # lets the last frames reach the core before exiting
        _LOG.info("sent %d frames of a %.0f Hz tone as stream %s", encoder.seq, args.hz, args.stream)
        return 0
