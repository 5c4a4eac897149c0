"""Typed, validated configuration: `yaml.safe_load` once → frozen dataclasses.

A bad value fails at start with the key, the value and what is allowed; unknown keys fail too,
because a typo that silently keeps a default is worse than an error.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"config key {key}: {value!r} is invalid; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    endpoint: str = "tcp://127.0.0.1:5555"
    """Where sources PUSH frames; the core binds a PULL socket here."""
    max_frame_bytes: int = 1 << 20
    """Frames larger than this are dropped (reason `too_large`)."""
    max_streams: int = 1024
    """Frames of a new stream beyond this many live streams are dropped (`too_many_streams`); with stream shards
    the limit holds in each worker."""
    receive_hwm: int = 10000
    """ZeroMQ receive high-water mark: beyond it, senders block (PUSH) instead of growing memory."""

    def validate(self) -> None:
        _check_endpoint("ingest.endpoint", self.endpoint)
        _check(1024 <= self.max_frame_bytes <= 64 << 20, "ingest.max_frame_bytes", self.max_frame_bytes, "1024 to 64 MiB")
        _check(1 <= self.max_streams <= 100_000, "ingest.max_streams", self.max_streams, "1 to 100000")
        _check(self.receive_hwm >= 1, "ingest.receive_hwm", self.receive_hwm, ">= 1")


@dataclasses.dataclass(frozen=True)
class EventsConfig:
    endpoint: str = "tcp://127.0.0.1:5556"
    """Where subscribers connect; the core binds a PUB socket here."""
    heartbeat_s: float = 1.0
    """Seconds between the core's `status` heartbeats (stream `_core`)."""
    log_path: str | None = None
    """sqlite event log; every event is committed here before it is published. null = no log."""
    retention_days: float | None = 30.0
    """Events older than this are deleted from the log; null keeps them forever."""

    def validate(self) -> None:
        _check_endpoint("events.endpoint", self.endpoint)
        _check(0.05 <= self.heartbeat_s <= 3600, "events.heartbeat_s", self.heartbeat_s, "0.05 to 3600 seconds")
        if self.retention_days is not None:
            _check(self.retention_days > 0, "events.retention_days", self.retention_days, "> 0 days, or null")


@dataclasses.dataclass(frozen=True)
class ControlConfig:
    endpoint: str | None = "tcp://127.0.0.1:5557"
    """Control requests (docs/control.md); the core binds a REP socket here. null = no control socket."""
    max_request_bytes: int = 65536
    history_s: float = 300.0
    """Seconds of window embeddings kept per stream for `enroll` from a stream's time range; 0 = none."""

    def validate(self) -> None:
        if self.endpoint is not None:
            _check_endpoint("control.endpoint", self.endpoint)
        _check(256 <= self.max_request_bytes <= 16 << 20, "control.max_request_bytes", self.max_request_bytes,
               "256 to 16 MiB")
        _check(0 <= self.history_s <= 86400, "control.history_s", self.history_s, "0 to 86400 seconds")


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    address: str = "127.0.0.1"
    """Prometheus endpoint address; loopback unless you mean otherwise."""
    port: int | None = 9108
    """HTTP port of /metrics; 0 = any free port (logged); null = no metrics endpoint."""

    def validate(self) -> None:
        if self.port is not None:
            _check(0 <= self.port <= 65535, "metrics.port", self.port, "0 to 65535, or null")


@dataclasses.dataclass(frozen=True)
class HealthConfig:
    idle_s: float = 30.0
    """A live stream without frames for this long gets a `status` event (reason `idle`)."""
    silence_s: float = 60.0
    """A stream sending only near-silence (peak below -60 dBFS) this long gets `status` (reason `silent`)."""

    def validate(self) -> None:
        _check(self.idle_s > 0, "health.idle_s", self.idle_s, "> 0 seconds")
        _check(self.silence_s > 0, "health.silence_s", self.silence_s, "> 0 seconds")


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    curve: bool = False
    """Encrypt and authenticate ingest, events and control with CURVE."""
    secret_key: str | None = None
    """The core's secret certificate (`NAME.key_secret` from `voicewatch keys`); required with curve."""
    authorized_keys: str | None = None
    """Folder of client public certificates (`*.key`) allowed to connect; required with curve."""

    def validate(self) -> None:
        if self.curve:
            _check(self.secret_key is not None, "security.secret_key", self.secret_key,
                   "a path to the core's NAME.key_secret (make one with `voicewatch keys`)")
            _check(self.authorized_keys is not None, "security.authorized_keys", self.authorized_keys,
                   "a folder of allowed clients' NAME.key files")


@dataclasses.dataclass(frozen=True)
class EpgConfig:
    xmltv: str | None = None
    """XMLTV guide: a file path or an http(s) URL. null = no EPG context in events."""
    refresh_s: float = 3600.0
    """Seconds between guide refreshes."""
    channels: dict[str, str] = dataclasses.field(default_factory=dict)
    """Stream id → XMLTV channel id."""

    def validate(self) -> None:
        _check(self.refresh_s >= 10, "epg.refresh_s", self.refresh_s, ">= 10 seconds")


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    length_s: float = 2.0
    """Window length in seconds (the model is trained on 2 s)."""
    hop_s: float = 1.0
    """Step between window starts; a window vouches for its central hop, and segment edges are accurate to about one
    hop (docs/events.md)."""

    def validate(self) -> None:
        _check(0.5 <= self.length_s <= 10.0, "windows.length_s", self.length_s, "0.5 to 10 seconds")
        _check(0.05 <= self.hop_s <= self.length_s, "windows.hop_s", self.hop_s, f"0.05 to windows.length_s ({self.length_s})")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    path: str | None = None
    """Embedder checkpoint (safetensors); null = the model shipped with voicewatch."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""

    def validate(self) -> None:
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "model.device", self.device, "auto, cpu, cuda, cuda:N")


@dataclasses.dataclass(frozen=True)
class BankConfig:
    path: str | None = None
    """Speaker bank file; null = the demo bank shipped with voicewatch."""
    threshold: float | None = None
    """Override the bank's default threshold (mean of top-5 cosine); null keeps the bank's."""

    def validate(self) -> None:
        if self.threshold is not None:
            _check(-1.0 <= self.threshold <= 1.0, "bank.threshold", self.threshold, "-1.0 to 1.0")


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    open_windows: int = 1
    """Consecutive positive windows needed before a segment is published."""
    close_windows: int = 2
    """Consecutive negative windows that end a segment (1 = end at the first negative one)."""
    min_segment_s: float = 2.0
    """Segments shorter than this are never published."""
    min_level_dbfs: float | None = -45.0
    """Windows quieter than this (RMS, dBFS) are never positive: near-silence names no one. null = off."""
    one_speaker_per_window: bool = True
    """A window positive for several speakers counts only for the one it passes by the widest margin."""

    def validate(self) -> None:
        _check(1 <= self.open_windows <= 100, "detector.open_windows", self.open_windows, "1 to 100")
        _check(1 <= self.close_windows <= 100, "detector.close_windows", self.close_windows, "1 to 100")
        _check(0.0 <= self.min_segment_s <= 3600, "detector.min_segment_s", self.min_segment_s, "0 to 3600")
        if self.min_level_dbfs is not None:
            _check(-120 <= self.min_level_dbfs <= 0, "detector.min_level_dbfs", self.min_level_dbfs, "-120 to 0, or null")


@dataclasses.dataclass(frozen=True)
class ProcessingConfig:
    max_batch_windows: int = 256
    """Most windows embedded in one tick; more waiting windows go to the next tick."""
    max_messages_per_tick: int = 20000
    """Most ingest frames read before the ready windows are processed."""
    max_lag_s: float | None = 10.0
    """Windows whose wall-clock end is older than this are dropped (counted, reported as `gap` events with
    reason `overload`). Only streams that send `wall` can lag; null = never drop."""
    threads: int = 0
    """CPU threads of the core's feature, embedding and matching work; 0 = torch's default (one per core).
    Fewer leave cores to other services on the box."""
    workers: int = 0
    """Stream-shard worker processes. 0 or 1: frames, windows and features on the core's own loop. N > 1: N
    processes, each owning the streams whose id hashes to it (their frames, windows, resampling and log-MEL),
    feeding the core's one scorer."""

    def validate(self) -> None:
        _check(0 <= self.workers <= 256, "processing.workers", self.workers, "0 or 1 (one process) to 256")
        _check(0 <= self.threads <= 4096, "processing.threads", self.threads, "0 (one per core) to 4096")
        _check(1 <= self.max_batch_windows <= 65536, "processing.max_batch_windows", self.max_batch_windows, "1 to 65536")
        _check(1 <= self.max_messages_per_tick <= 1_000_000, "processing.max_messages_per_tick",
               self.max_messages_per_tick, "1 to 1000000")
        if self.max_lag_s is not None:
            _check(self.max_lag_s > 0, "processing.max_lag_s", self.max_lag_s, "> 0 seconds, or null")


@dataclasses.dataclass(frozen=True)
class ClipsConfig:
    path: str | None = None
    """Folder of evidence clips (one FLAC per segment, docs/events.md); null = no clips."""
    max_mb: float = 2048.0
    """The store's size limit; the oldest clips leave first."""
    max_age_days: float | None = 30.0
    """Clips older than this are removed; null keeps them until the size limit needs the room."""
    pad_s: float = 1.0
    """Audio kept before and after the segment."""
    max_s: float = 60.0
    """Longest clip: a longer segment keeps its first `max_s` seconds (its opening second included)."""
    queue: int = 64
    """Clips waiting for the disk; past this a clip is dropped and counted, the scoring never waits."""

    def validate(self) -> None:
        _check(self.max_mb > 0, "clips.max_mb", self.max_mb, "> 0")
        if self.max_age_days is not None:
            _check(self.max_age_days > 0, "clips.max_age_days", self.max_age_days, "> 0 days, or null")
        _check(0 <= self.pad_s <= 10, "clips.pad_s", self.pad_s, "0 to 10 seconds")
        _check(2 <= self.max_s <= 600, "clips.max_s", self.max_s, "2 to 600 seconds")
        _check(1 <= self.queue <= 10000, "clips.queue", self.queue, "1 to 10000")


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    max_exemplars: int = 96
    """Exemplars a speaker may hold once confirmed clips add theirs; the least typical leave first."""
    max_cohort: int = 512
    """Windows of rejected clips kept per speaker (its impostor cohort); the oldest leave first."""

    def validate(self) -> None:
        _check(8 <= self.max_exemplars <= 4096, "review.max_exemplars", self.max_exemplars, "8 to 4096")
        _check(1 <= self.max_cohort <= 100_000, "review.max_cohort", self.max_cohort, "1 to 100000")


@dataclasses.dataclass(frozen=True)
class WebConfig:
    address: str = "127.0.0.1"
    """Where `voicewatch web` serves the timeline page; anything but loopback needs `token`."""
    port: int = 8090
    token: str | None = None
    """Secret a browser must present once (`/?token=…`) when the page is served off loopback (docs/security.md)."""

    def validate(self) -> None:
        _check(0 <= self.port <= 65535, "web.port", self.port, "0 to 65535")
        if self.token is not None:
            _check(len(self.token) >= 16, "web.token", "…", "at least 16 characters (e.g. `openssl rand -hex 16`)")


@dataclasses.dataclass(frozen=True)
class Config:
    ingest: IngestConfig = IngestConfig()
    events: EventsConfig = EventsConfig()
    control: ControlConfig = ControlConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    security: SecurityConfig = SecurityConfig()
    epg: EpgConfig = EpgConfig()
    windows: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    bank: BankConfig = BankConfig()
    detector: DetectorConfig = DetectorConfig()
    processing: ProcessingConfig = ProcessingConfig()
    clips: ClipsConfig = ClipsConfig()
    review: ReviewConfig = ReviewConfig()
    web: WebConfig = WebConfig()
    log_level: str = "INFO"

    def validate(self) -> Config:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if hasattr(value, "validate"):
                value.validate()
        _check(self.processing.workers <= 1 or self.clips.path is None, "processing.workers", self.processing.workers,
               "0 or 1 while clips.path is set (clips are cut from samples that stay in the shard processes)")
        _check(self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level", self.log_level,
               "DEBUG, INFO, WARNING, ERROR")
        return self


def _check_endpoint(key: str, endpoint: str) -> None:
    _check(isinstance(endpoint, str) and endpoint.split("://")[0] in ("tcp", "ipc", "inproc"), key, endpoint,
           "tcp://HOST:PORT or ipc://PATH")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Recursively turn a mapping into `cls`, checking names and scalar types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key {prefix or '<top>'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in sorted(unknown))}; known: {sorted(names)}")
    values = {}
    for name, value in data.items():
        key, kind = prefix + name, hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, key + ".")
        else:
            values[name] = _coerce(key, value, kind)
    return cls(**values)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"config key {key}: {value!r} is invalid; expected a mapping of names to names")
        return dict(value)
    allowed = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"config key {key}: null is not allowed")
    for option in allowed:
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool) and type(value) is option:
            return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise ConfigError(f"config key {key}: {value!r} is invalid; expected {names}")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a YAML config file (None = built-in defaults, as in the repo's config.yaml)."""
    if path is None:
        return Config().validate()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    config: Config = _build(Config, data, "")
    return config.validate()
