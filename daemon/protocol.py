"""Wire messages: ingest frames (sources → core) and events (core → subscribers).

Ingest frame, protocol version 1 (docs/protocol.md): multipart `[stream_id, header_json, pcm]`.
Event, schema version 2 (docs/events.md): multipart `[topic, json]`.
Everything is JSON plus raw PCM; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import numpy as np

from voicewatch.names import NAME_PATTERN
from voicewatch.strictjson import StrictJsonError, loads_object

PROTOCOL_VERSION = 1
EVENT_SCHEMA_VERSION = 2
"""2 adds `clip` to `end` events; every field of 1 is unchanged."""
SAMPLE_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHANNELS = 8
MAX_HEADER_BYTES = 4096
"""A header is a flat JSON object of scalars; ~120 bytes in practice, at most this many."""
SOURCE_STATUSES = ("input_dead", "reconnecting", "recovered")
"""What a source may say of its own input in a frame's `status` (the core publishes `source_<status>`)."""


class BadFrame(ValueError):
    """An ingest frame the core drops; `reason` is the counter label, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class FrameHeader:
    seq: int
    """Per-stream sequence number; a jump forward is a gap, a step backwards is refused."""
    rate: int
    """Sample rate in Hz, 8000-48000."""
    channels: int
    """Interleaved channels, 1-8; the core downmixes to mono."""
    format: str
    """`s16le` or `f32le`."""
    pts: float
    """Stream time of the frame's first sample, seconds."""
    wall: float | None = None
    """UTC epoch seconds of the first sample, when the source knows it."""
    eos: bool = False
    """End of stream: the core closes the stream's open segments and forgets it."""
    status: str | None = None
    """The source's word on its input (one of SOURCE_STATUSES), usually on a frame without audio."""
    v: int = PROTOCOL_VERSION

    def to_json(self) -> bytes:
        data = {"seq": self.seq, "rate": self.rate, "channels": self.channels, "format": self.format, "pts": self.pts,
                "wall": self.wall, "eos": self.eos, "status": self.status, "v": self.v}
        return json.dumps({k: v for k, v in data.items() if v is not None and v is not False},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FrameHeader:
        try:
            data = loads_object(raw, MAX_HEADER_BYTES, max_depth=1)
        except StrictJsonError as exc:
            raise BadFrame(_HEADER_REASONS[exc.reason], f"header refused: {exc}") from None
        get = data.get
        version = get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:  # not true, not 1.0
            raise BadFrame("bad_version", f"protocol version {version!r} is not {PROTOCOL_VERSION}")
        seq, rate, channels, fmt, pts = get("seq"), get("rate"), get("channels"), get("format"), get("pts")
        wall, eos, status = get("wall"), get("eos", False), get("status")
        # `type(x) is int` also refuses JSON's true/false, which Python counts as ints; one test for the
        # usual frame, and the field-by-field reasons only for a bad one (every frame pays for this parse)
        if not (type(seq) is int and type(rate) is int and type(channels) is int and type(fmt) is str
                and type(pts) in _NUMBER and (wall is None or type(wall) in _NUMBER) and type(eos) is bool
                and (status is None or status in SOURCE_STATUSES)):
            _refuse_fields(data)
        pts, wall_s = _finite(pts), None if wall is None else _finite(wall)
        if seq < 0 or pts is None or (wall is not None and wall_s is None):
            raise BadFrame("bad_field", "seq must be >= 0 and pts/wall finite")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise BadFrame("bad_rate", f"rate {rate} is outside {MIN_RATE}-{MAX_RATE} Hz")
        if not 1 <= channels <= MAX_CHANNELS:
            raise BadFrame("bad_channels", f"channels {channels} is outside 1-{MAX_CHANNELS}")
        if fmt not in SAMPLE_FORMATS:
            raise BadFrame("bad_format", f"format {fmt!r} is not one of {sorted(SAMPLE_FORMATS)}")
        return cls(seq, rate, channels, fmt, pts, wall_s, eos, status)


_NUMBER = (int, float)
_HEADER_REASONS = {"too_large": "header_too_large", "too_deep": "nested_header", "bad_json": "bad_json"}
"""strictjson's reasons → the ingest counter's (docs/protocol.md)."""


def _finite(number: float) -> float | None:
    """`number` as a finite float, or None (NaN, ±inf, or an integer too large for a float)."""
    try:
        value = float(number)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _refuse_fields(data: dict[str, Any]) -> None:
    """Raise the BadFrame that names the first header field of the wrong kind."""
    for name, kind in (("seq", int), ("rate", int), ("channels", int), ("format", str), ("pts", _NUMBER)):
        if name not in data:
            raise BadFrame("bad_field", f"header lacks field {name!r}")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BadFrame("bad_field", f"field {name!r} has the wrong type: {value!r}")
    wall, eos, status = data.get("wall"), data.get("eos", False), data.get("status")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, _NUMBER)):
        raise BadFrame("bad_field", f"field 'wall' must be a number, got {wall!r}")
    if not isinstance(eos, bool):
        raise BadFrame("bad_field", f"field 'eos' must be true or false, got {eos!r}")
    raise BadFrame("bad_field", f"field 'status' must be one of {', '.join(SOURCE_STATUSES)}, got {status!r}")


@dataclasses.dataclass(frozen=True)
class Frame:
    stream: str
    header: FrameHeader
    samples: np.ndarray
    """Mono samples (downmixed here, once) in the wire's resolution: int16 for `s16le` (several channels'
    mean rounded to the nearest step), float32 in [-1, 1] for `f32le`."""

    @property
    def scale(self) -> float:
        """What a sample is multiplied by to give its value in [-1, 1]."""
        return sample_scale(self.samples.dtype)


def sample_scale(dtype: np.dtype) -> float:
    """Full scale of mono samples held as `dtype`: 1/32768 for int16, 1 for float32."""
    return 1 / 32768 if dtype == np.int16 else 1.0


def decode_frame(parts: list[bytes] | list[memoryview], max_bytes: int) -> Frame:
    """Validate and decode one multipart ingest message; raises BadFrame with a counter reason."""
    if len(parts) != 3:
        raise BadFrame("bad_parts", f"expected 3 message parts, got {len(parts)}")
    raw_stream, raw_header, pcm = parts
    if sum(len(p) for p in parts) > max_bytes:
        raise BadFrame("too_large", f"frame of {sum(len(p) for p in parts)} bytes exceeds {max_bytes}")
    try:
        stream = bytes(raw_stream).decode()
    except UnicodeDecodeError:
        raise BadFrame("bad_stream_id", "stream id is not UTF-8") from None
    if not NAME_PATTERN.fullmatch(stream):
        raise BadFrame("bad_stream_id", f"stream id {stream[:80]!r} is not 1-64 of A-Z a-z 0-9 _ -")
    header = FrameHeader.from_json(bytes(raw_header))
    dtype = SAMPLE_FORMATS[header.format]
    frame_bytes = dtype.itemsize * header.channels
    if len(pcm) % frame_bytes:
        raise BadFrame(
            "bad_length",
            f"payload of {len(pcm)} bytes is not a whole number of {header.channels}-channel {header.format} samples",
        )
    interleaved = np.frombuffer(pcm, dtype=dtype).reshape(-1, header.channels)
    if header.channels == 1:
        mono = interleaved[:, 0]
    elif header.format == "s16le":  # the channels' mean rounded to the nearest step (half up), in integers
        total = np.add(interleaved[:, 0], interleaved[:, 1], dtype=np.int32)
        for channel in range(2, header.channels):
            total += interleaved[:, channel]
        total += header.channels // 2
        mono = np.floor_divide(total, header.channels, out=total).astype(np.int16)
    else:
        mono = interleaved @ _downmix(header.channels)
    if header.format == "f32le" and not np.isfinite(mono).all():
        raise BadFrame("non_finite", "f32le payload holds NaN or infinite samples")
    return Frame(stream, header, mono)


@functools.cache
def _downmix(channels: int) -> np.ndarray:
    """Channel weights: one matrix-vector product averages, cheaper than a mean over channels."""
    return np.full(channels, 1 / channels, dtype=np.float32)


def encode_frame(stream: str, header: FrameHeader, pcm: bytes) -> list[bytes]:
    return [stream.encode(), header.to_json(), pcm]


SEGMENT_TYPES = ("start", "update", "end")
STREAM_TYPES = ("gap", "status")


@dataclasses.dataclass(frozen=True)
class Event:
    """A detection-segment change or a stream notice; the JSON payload of one PUB message."""

    type: str
    """`start` | `update` | `end` (segments) or `gap` | `status` (streams)."""
    stream: str
    start: float
    """Stream time, seconds: segment start, or start of the gap."""
    end: float
    """Stream time, seconds: segment end so far, or end of the gap."""
    speaker: str | None = None
    peak: float | None = None
    """Highest window score in the segment."""
    mean: float | None = None
    """Mean window score in the segment."""
    wall_start: float | None = None
    """UTC epoch of `start` when the source sent wall-clock time."""
    wall_end: float | None = None
    reason: str | None = None
    """Why a gap or status was emitted (e.g. `seq_gap`, `overload`, `eos`)."""
    programme: dict[str, Any] | None = None
    """EPG context of a segment: `title`, `start`, `stop` (UTC epoch) of the programme at `wall_start`."""
    clip: str | None = None
    """`end` events (schema 2): id of the segment's evidence clip, when the core keeps clips and took this one."""
    id: int | None = None
    """Strictly increasing per core, assigned when published; None (no `id` in the JSON) on unlogged heartbeats."""
    v: int = EVENT_SCHEMA_VERSION

    @property
    def topic(self) -> str:
        """`det.<stream>.<speaker>.` for segments, `<type>.<stream>.` otherwise; the trailing dot
        makes SUB prefixes exact (`det.ch3.` never matches `det.ch30.`)."""
        if self.type in SEGMENT_TYPES:
            return f"det.{self.stream}.{self.speaker}."
        return f"{self.type}.{self.stream}."

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def to_message(self) -> list[bytes]:
        return [self.topic.encode(), json.dumps(self.to_dict(), separators=(",", ":")).encode()]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def from_message(cls, parts: list[bytes]) -> Event:
        return cls.from_dict(json.loads(parts[1]))
