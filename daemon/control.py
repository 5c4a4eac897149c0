"""Control API (version 1, docs/control.md): JSON requests on a REP socket, answered in the core's loop.

Every request is `{"v": 1, "cmd": NAME, ...}`; every reply is `{"v": 1, "ok": true, ...}` or
`{"v": 1, "ok": false, "error": "..."}`. A bad request costs only its own reply.
Bank changes are made on a copy, saved atomically, then swapped in: a failure leaves the running
bank and the file as they were.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicewatch.allocator import heap_bytes, resident_bytes
from voicewatch.bank import SpeakerBank
from voicewatch.deskcontrol import DeskCommands
from voicewatch.enrollment import embed_clips
from voicewatch.protocol import Event
from voicewatch.security import CurveClient
from voicewatch.strictjson import StrictJsonError, loads_object

_LOG = logging.getLogger(__name__)
CONTROL_VERSION = 1
MAX_REQUEST_DEPTH = 2
"""A request is an object whose fields are scalars or lists of them (`enroll`'s `clips`)."""
TRANSPORT_FACTOR = 16
"""The control socket's ZMQ_MAXMSGSIZE is this × `control.max_request_bytes`: a request between the two gets an
error reply; only a larger one is dropped by ZeroMQ (with the peer's connection) to protect memory."""


class ControlError(ValueError):
    pass


def held_memory_mib(core: Any) -> dict[str, float]:
    """MiB held by each per-stream structure of the core (and of its shard workers, where it has them), what the
    core's malloc holds, and the RSS of the core and of its workers together."""
    pipeline = core.pipeline
    workers = core.shards.memory() if core.shards is not None else {"window_buffers": 0, "rss": 0}
    held = {
        "window_buffers": sum(buffer.nbytes for buffer in core.ingest.buffers.values()) + workers["window_buffers"],
        "shared_frames": pipeline.frames.held_bytes(),
        "history": pipeline.history.held_bytes() if pipeline.history is not None else 0,
        "clip_audio": 2 * core.evidence.audio.held_samples() if core.evidence is not None else 0,
        **heap_bytes(),
        "rss": resident_bytes(),
        "workers_rss": workers["rss"],
    }
    return {name: round(count / 2**20, 3) for name, count in held.items()}


def _arg(request: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = request.get(name)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ControlError(f"request field {name!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _number(request: dict[str, Any], name: str, default: float | None = None) -> float:
    """A finite number field (booleans and integers too large for a float are refused)."""
    if default is not None and name not in request:
        return default
    value = _arg(request, name, (int, float))
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ControlError(f"request field {name!r} must be a finite number")
    return number


class Controller:
    """Answers control requests against a running core (`core` is a voicewatch.service.Core)."""

    def __init__(self, core: Any, max_request_bytes: int) -> None:
        self.core = core
        self.max_request_bytes = max_request_bytes
        self.commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self.status,
            "speakers": self.speakers,
            "enroll": self.enroll,
            "remove": self.remove,
            "set_threshold": self.set_threshold,
            "reload": self.reload,
        }
        self.commands.update(DeskCommands(core).commands)
        self.pending_events: list[Event] = []
        """Events a command caused (segments ended by a removal), for the core to publish."""

    def handle(self, parts: list[bytes]) -> bytes:
        try:
            if len(parts) != 1:
                raise ControlError(f"a request is one message part, got {len(parts)}")
            try:
                request = loads_object(parts[0], self.max_request_bytes, MAX_REQUEST_DEPTH)
            except StrictJsonError as exc:
                raise ControlError(f"request refused: {exc}") from None
            version, cmd = request.get("v"), request.get("cmd")
            if type(version) is not int or version != CONTROL_VERSION:
                raise ControlError(f"request must be a JSON object with \"v\": {CONTROL_VERSION}")
            command = self.commands.get(cmd) if isinstance(cmd, str) else None
            if command is None:
                raise ControlError(f"unknown cmd {str(cmd)[:80]!r}; known: {sorted(self.commands)}")
            reply = {"v": CONTROL_VERSION, "ok": True, **command(request)}
        except Exception as exc:  # every failure becomes an error reply; the core goes on
            if not isinstance(exc, (ControlError, ValueError, KeyError, OSError)):
                _LOG.exception("control request failed")
            reply = {"v": CONTROL_VERSION, "ok": False, "error": str(exc)}
        return json.dumps(reply).encode()

    # -- commands -------------------------------------------------------------------------------
    def status(self, _request: dict[str, Any]) -> dict[str, Any]:
        core, now, wall = self.core, time.monotonic(), time.time()
        streams = {}
        for state in core.intake.streams():
            factor, lag = state.real_time_factor(now), state.lag_s(wall)
            streams[state.name] = {
                "rate": state.rate,
                "stream_time": round(state.time, 3),
                "last_frame_age_s": round(now - state.last_seen, 3),
                "real_time_factor": None if factor is None else round(factor, 3),
                "lag_s": None if lag is None else round(lag, 3),
                "open_segments": core.pipeline.detector.open_segments(state.name),
            }
        return {
            "streams": streams,
            "frames": core.intake.frames,
            "windows": core.pipeline.windows,
            "bad_frames": dict(core.intake.dropped),
            "windows_dropped": dict(core.windows_dropped()),
            "speakers": len(core.pipeline.bank),
            "model": core.pipeline.embedder.model_id,
            "device": str(core.pipeline.embedder.device),
            "batches": core.metrics.batches,
            "stage_seconds": {stage: round(spent, 6) for stage, spent in core.stage_seconds().items()},
            "workers": core.shards.describe() if core.shards is not None else None,
            "clips": core.evidence.counts() if core.evidence is not None else None,
            "memory_mib": held_memory_mib(core),
        }

    def speakers(self, _request: dict[str, Any]) -> dict[str, Any]:
        bank = self.core.pipeline.bank
        return {"speakers": [{"name": n, "exemplars": len(bank.exemplars(n)), "threshold": bank.threshold(n),
                              "cohort": len(bank.cohort(n)[0])} for n in bank.names]}

    def enroll(self, request: dict[str, Any]) -> dict[str, Any]:
        """From `clips` (files on the core's machine) or from `stream` between `start` and `end`."""
        name = _arg(request, "name", str)
        self._bank_path()  # refuse before the work of embedding
        min_speech = _number(request, "min_speech_s", 10.0)
        if "stream" in request:
            embeddings = self._from_stream(request, min_speech)
        else:
            clips = _arg(request, "clips", list)
            if not clips or not all(isinstance(c, str) for c in clips):
                raise ControlError("request field 'clips' must be a non-empty list of file paths on the core's machine")
            embeddings = embed_clips(self.core.pipeline.embedder, clips, min_speech)
        self._change_bank(lambda bank: bank.enroll(name, embeddings))
        return {"name": name, "exemplars": len(embeddings)}

    def _from_stream(self, request: dict[str, Any], min_speech: float) -> Any:
        stream = _arg(request, "stream", str)
        start, end = _number(request, "start"), _number(request, "end")
        history = self.core.pipeline.history
        if history is None:
            raise ControlError("the core keeps no embedding history (control.history_s is 0)")
        embeddings, seconds = history.between(stream, start, end)
        if seconds < min_speech:
            raise ControlError(f"stream {stream!r} has {seconds:.1f} s of audible windows between {start} and {end} "
                               f"in its history; at least {min_speech:.1f} s are needed")
        return embeddings

    def remove(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _arg(request, "name", str)
        self._change_bank(lambda bank: bank.remove(name))
        return {"name": name}

    def set_threshold(self, request: dict[str, Any]) -> dict[str, Any]:
        name, threshold = _arg(request, "name", str), _number(request, "threshold")
        self._change_bank(lambda bank: bank.set_threshold(name, threshold))
        return {"name": name, "threshold": threshold}

    def reload(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.core.reload_requested.set()
        return {"reload": "scheduled"}

    def _bank_path(self) -> Path:
        path = self.core.config.bank.path
        if path is None:
            raise ControlError("the core runs on the shipped demo bank; set bank.path in the config to change speakers")
        return Path(path)

    def _change_bank(self, change: Callable[[SpeakerBank], None]) -> None:
        path = self._bank_path()
        bank = self.core.pipeline.bank.copy()
        change(bank)
        bank.save(path)
        self.pending_events += self.core.pipeline.swap_bank(bank)


def request(endpoint: str, payload: dict[str, Any], timeout_s: float = 30.0,
            curve: CurveClient | None = None) -> dict[str, Any]:
    """Send one control request to a core and return its reply; raises ControlError on failure."""
    import zmq

    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    if curve is not None:
        curve.secure(socket)
    socket.connect(endpoint)
    try:
        socket.send(json.dumps({"v": CONTROL_VERSION, **payload}).encode())
        reply = json.loads(socket.recv())
    except zmq.Again:
        raise ControlError(f"no core answered at {endpoint} within {timeout_s:g} s (is `voicewatch run` up?)") from None
    finally:
        socket.close()
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "the core refused the request"))
    return reply
