"""The clip store: one FLAC file per detected segment, bounded in size and age, oldest out first.

Each clip carries what it is (stream, speaker, times, the stream's window grid) as JSON in its FLAC
comment, so a clip file alone is enough to review it. Files are written atomically (temp file +
rename). `ClipWriter` does the encoding and writing on its own thread behind a bounded queue: a
slow disk costs clips (counted), never the scoring loop's time.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from voicewatch.atomicfile import atomic_write_bytes
from voicewatch.recentaudio import ClipAudio

_LOG = logging.getLogger(__name__)
CLIP_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9]{1,9}")
"""Clip ids: UTC date and time the clip was taken, and a counter (`20261201-180312-7`)."""


class ClipError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    """What a clip holds; stored as JSON in the FLAC file's comment."""

    id: str
    stream: str
    speaker: str
    rate: int
    start: float
    """Stream time of the clip's first sample."""
    end: float
    segment_start: float
    """The segment (as its `end` event gives it) inside the clip."""
    segment_end: float
    first_window: float
    """Stream time where the segment's first window began: with `hop_s`, the grid the core cut the stream on."""
    window_s: float
    hop_s: float
    peak: float | None = None
    mean: float | None = None
    wall_start: float | None = None
    """UTC epoch of the clip's first sample, when the source sent wall-clock time."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def check_clip_id(clip_id: object) -> str:
    if not isinstance(clip_id, str) or not CLIP_ID.fullmatch(clip_id):
        raise ClipError(f"{clip_id!r} is not a clip id (like 20261201-180312-7)")
    return clip_id


def encode_flac(info: ClipInfo, samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=info.rate, channels=1, format="FLAC", subtype="PCM_16") as flac:
        flac.title = f"{info.stream} {info.speaker}"
        flac.comment = json.dumps(info.to_dict())
        flac.write(samples)
    return buffer.getvalue()


def decode_flac(data: bytes) -> tuple[ClipInfo, np.ndarray]:
    """A clip's info and int16 samples."""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as flac:
            info = ClipInfo.from_dict(json.loads(flac.comment))
            return info, flac.read(dtype="int16")
    except (soundfile.LibsndfileError, json.JSONDecodeError, TypeError, RuntimeError) as exc:
        raise ClipError(f"not a voicewatch clip: {exc}") from None


class ClipStore:
    """`<folder>/<id>.flac`, at most `max_bytes` in all and none older than `max_age_s`."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int, max_age_s: float | None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._index: dict[str, tuple[float, int]] = {}
        """id → (modification time, bytes), oldest first."""
        found = []
        for path in self.folder.glob("*.flac"):
            if CLIP_ID.fullmatch(path.stem):
                stat = path.stat()
                found.append((stat.st_mtime, path.stem, stat.st_size))
        self._index = {clip_id: (mtime, size) for mtime, clip_id, size in sorted(found)}
        self._taken: set[str] = set()
        self._counter = 0

    def new_id(self, now: float | None = None) -> str:
        """A fresh id; unique in this store (a restart within the same second skips ids already on disk)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
        while True:
            self._counter += 1
            clip_id = f"{stamp}-{self._counter}"
            if clip_id not in self._index and clip_id not in self._taken:
                self._taken.add(clip_id)
                return clip_id

    def path(self, clip_id: str) -> Path:
        return self.folder / f"{check_clip_id(clip_id)}.flac"

    def write(self, info: ClipInfo, samples: np.ndarray) -> int:
        """Encode and store a clip atomically, then evict what the limits no longer allow; returns its bytes."""
        data = encode_flac(info, samples)
        atomic_write_bytes(self.path(info.id), data)
        with self._lock:
            self._taken.discard(info.id)
            self._index[info.id] = (time.time(), len(data))
        self.evict()
        return len(data)

    def read(self, clip_id: str) -> bytes:
        try:
            return self.path(clip_id).read_bytes()
        except FileNotFoundError:
            raise ClipError(f"clip {clip_id} is not in the clip store (never written, or removed by its size "
                            "or age limit)") from None

    def evict(self, now: float | None = None) -> list[str]:
        """Remove the oldest clips until the store is within its size and age limits."""
        now = time.time() if now is None else now
        gone = []
        with self._lock:
            total = sum(size for _, size in self._index.values())
            for clip_id, (mtime, size) in list(self._index.items()):
                too_old = self.max_age_s is not None and now - mtime > self.max_age_s
                if not too_old and total <= self.max_bytes:
                    break
                del self._index[clip_id]
                total -= size
                gone.append(clip_id)
        for clip_id in gone:
            self.path(clip_id).unlink(missing_ok=True)
        return gone

    def __len__(self) -> int:
        return len(self._index)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._index.values())


class ClipWriter:
    """Writes clips on its own thread; `submit` never waits: with the queue full the clip is dropped and counted."""

    def __init__(self, store: ClipStore, queue_size: int) -> None:
        self.store = store
        self.written = 0
        self.dropped = 0
        """Clips refused because the queue was full (the disk is slower than the detections)."""
        self.failed = 0
        """Clips whose write raised (a full or failing disk)."""
        self._queue: queue.Queue[tuple[ClipInfo, ClipAudio] | None] = queue.Queue(maxsize=queue_size)
        self._pending: dict[str, tuple[ClipInfo, ClipAudio]] = {}
        """Clips queued or being written: their `end` event is out, so they are served from here meanwhile."""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="clip-writer", daemon=True)
        self._thread.start()

    def submit(self, info: ClipInfo, audio: ClipAudio) -> bool:
        with self._lock:
            try:
                self._queue.put_nowait((info, audio))
            except queue.Full:
                self.dropped += 1
                return False
            self._pending[info.id] = (info, audio)
        return True

    def read(self, clip_id: str) -> bytes:
        """A clip's FLAC bytes, whether it is written yet or not."""
        with self._lock:
            pending = self._pending.get(check_clip_id(clip_id))
        return encode_flac(pending[0], pending[1].samples) if pending else self.store.read(clip_id)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            info, audio = job
            try:
                self.store.write(info, audio.samples)
                self.written += 1
            except Exception as exc:  # a failing disk costs this clip, not the writer
                self.failed += 1
                _LOG.error("could not write clip %s: %s", info.id, exc)
            with self._lock:
                del self._pending[info.id]

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (for at most `timeout_s`), then stop."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            _LOG.warning("clip writer still busy after %.0f s; %d clips left unwritten", timeout_s, self._queue.qsize())
            return
        self._thread.join(timeout_s)
