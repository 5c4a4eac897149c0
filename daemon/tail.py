"""`voicewatch tail`: subscribe to a core's events and print them."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence

import numpy as np
import zmq

from voicewatch.eventlog import read_events
from voicewatch.protocol import Event
from voicewatch.security import CurveClient

_LOG = logging.getLogger(__name__)
Sink = Callable[[np.ndarray, int], None]
"""Plays int16 samples at a rate, returning when they have been played."""


def clock(seconds: float) -> str:
    """Stream time as MM:SS.s (or H:MM:SS.s past an hour)."""
    minutes, secs = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes:02d}:{secs:04.1f}"


def format_event(event: Event) -> str | None:
    """One human-readable line, e.g. `ch3  alice  03:06.0–03:41.0  peak 0.86`; None for noise."""
    span = f"{clock(event.start)}–{clock(event.end)}"
    if event.type == "end":
        return f"{event.stream}  {event.speaker}  {span}  peak {event.peak:.2f}  mean {event.mean:.2f}"
    if event.type == "start":
        return f"{event.stream}  {event.speaker}  {clock(event.start)}–…  speaking (score {event.peak:.2f})"
    if event.type == "gap":
        return f"{event.stream}  gap  {span}  ({event.reason})"
    if event.type == "status" and event.reason != "heartbeat":
        return f"{event.stream}  status  {clock(event.end)}  {event.reason}"
    return None


def follow(endpoint: str, topics: Sequence[str], on_event: Callable[[Event], bool], stop: threading.Event,
           log_path: str | None = None, since: int | None = None, curve: CurveClient | None = None) -> None:
    """Call `on_event` for every event until it returns False or `stop` is set.

    With `since`, first replay the logged events after that id, then go on live with no gap and
    no duplicate: the log is read only once the subscription is known to be live (a first
    message, at the latest the next heartbeat, has arrived), and live events already read from
    the log are skipped by id.
    """
    socket = zmq.Context.instance().socket(zmq.SUB)
    if curve is not None:
        curve.secure(socket)
    socket.connect(endpoint)
    catching_up = since is not None
    for topic in [*topics, "status._core."] if catching_up else topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    last_logged = -1
    try:
        while not stop.is_set():
            if not socket.poll(200):
                continue
            event = Event.from_message(socket.recv_multipart())
            if catching_up:
                catching_up = False
                if log_path is None:
                    raise ValueError("--since needs the event log (--log PATH)")
                for logged in read_events(log_path, since or 0):
                    if any(logged.topic.startswith(t) for t in topics):
                        if not on_event(logged):
                            return
                    last_logged = logged.id
            if event.id and event.id <= last_logged:
                continue
            if not on_event(event):
                return
    finally:
        socket.close(linger=0)


def print_events(as_json: bool, show_heartbeats: bool = False) -> Callable[[Event], bool]:
    def show(event: Event) -> bool:
        if event.reason == "heartbeat" and not show_heartbeats:
            return True
        line = json.dumps(event.to_dict()) if as_json else format_event(event)
        if line is not None:
            print(line, flush=True)
        return True

    return show


def sound_device(samples: np.ndarray, rate: int) -> None:
    """The default output device, through PortAudio (sounddevice)."""
    import sounddevice

    sounddevice.play(samples, rate)
    sounddevice.wait()


class ClipPlayer:
    """Plays the clips that `end` events name, one after another on its own thread, so that printing never
    waits; while one plays at most `backlog` more wait, later ones are skipped (and said so)."""

    def __init__(self, control: str, curve: CurveClient | None = None, sink: Sink = sound_device, backlog: int = 4) -> None:
        self.control, self.curve, self.sink = control, curve, sink
        self.played = 0
        self._queue: queue.Queue[str | None] = queue.Queue(backlog)
        self._thread = threading.Thread(target=self._work, name="clip-player", daemon=True)
        self._thread.start()

    def wrap(self, on_event: Callable[[Event], bool]) -> Callable[[Event], bool]:
        def both(event: Event) -> bool:
            keep_going = on_event(event)
            if event.type == "end" and event.clip:
                try:
                    self._queue.put_nowait(event.clip)
                except queue.Full:
                    _LOG.warning("clip %s not played: %d clips are waiting already", event.clip, self._queue.qsize())
            return keep_going

        return both

    def _work(self) -> None:
        from voicewatch.clipstore import decode_flac
        from voicewatch.control import request

        while (clip := self._queue.get()) is not None:
            try:
                info, samples = decode_flac(base64.b64decode(request(self.control, {"cmd": "clip", "id": clip},
                                                                     curve=self.curve)["flac"]))
                self.sink(samples, info.rate)
                self.played += 1
            except Exception as exc:  # a missing sound device or clip costs that clip, never the tail
                _LOG.warning("cannot play clip %s: %s", clip, exc)

    def close(self, timeout_s: float = 60.0) -> None:
        """Play what is waiting (for at most `timeout_s`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
