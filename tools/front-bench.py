"""How many ingest frames per second the stream shards' front routes (one thread, ZeroMQ over ipc://).

Usage: python tools/front-bench.py [--frames 40000] [--workers 2]
A sender process queues the frames (48 kHz stereo s16, 100 ms, 1,000 streams) at the front's PULL
socket first; then the front starts and the time until sink processes in the workers' place have
received every frame is measured, with this process's CPU (the front and ZeroMQ's I/O thread) over it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.sharedctypes
import os
import tempfile
import time

import zmq

from voicewatch.protocol import FrameHeader, encode_frame
from voicewatch.shards import Front

STREAMS = 1000


def _sink(endpoint: str, received: multiprocessing.sharedctypes.Synchronized) -> None:
    pull = zmq.Context().socket(zmq.PULL)
    pull.connect(endpoint)
    while True:
        pull.recv_multipart(copy=False)
        with received.get_lock():
            received.value += 1


def _send(endpoint: str, frames: int) -> None:
    push = zmq.Context().socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, frames)
    push.connect(endpoint)
    pcm = bytes(19200)
    for i in range(frames):
        header = FrameHeader(seq=i // STREAMS, rate=48000, channels=2, format="s16le", pts=0.1 * (i // STREAMS))
        push.send_multipart(encode_frame(f"s{i % STREAMS}", header, pcm))
    push.close(linger=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="voicewatch-front-")
    context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, args.frames)
    pull.bind(f"ipc://{folder}/ingest")
    front = Front(context, [f"ipc://{folder}/shard-{i}" for i in range(args.workers)], hwm=args.frames)
    received = multiprocessing.Value("q", 0)
    sinks = [multiprocessing.Process(target=_sink, args=(endpoint, received), daemon=True)
             for endpoint in front.endpoints]
    for sink in sinks:
        sink.start()
    sender = multiprocessing.Process(target=_send, args=(f"ipc://{folder}/ingest", args.frames))
    sender.start()
    sender.join()
    cpu, started = sum(os.times()[:2]), time.perf_counter()
    front.start(pull)
    while received.value < args.frames:  # the front thread alone touches `pull`
        time.sleep(0.005)
    elapsed, cpu = time.perf_counter() - started, sum(os.times()[:2]) - cpu
    front.stop()
    print(json.dumps({"frames": args.frames, "workers": args.workers, "seconds": round(elapsed, 3),
                      "frames_per_s": round(args.frames / elapsed), "cpu_us_per_frame": round(1e6 * cpu / args.frames, 1)}))


if __name__ == "__main__":
    main()
