"""Windows as their times, log-MEL features and levels: what crosses from a feature process to the one scorer.

A batch is one ZeroMQ multipart message: a JSON header naming its items (windows without their samples,
stream breaks, source notices) and the features' shape, then the raw float32 [W, n_mels, frames] features
and the [W] levels of its W windows. The scorer needs only a window's times to decide on it, so the
samples never leave the process that made the features. `scan --workers` and the core's stream shards
both speak it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import zmq

from voicewatch.pipeline import window_levels
from voicewatch.sharedframes import SharedFrames
from voicewatch.windows import Item, SourceNotice, StreamBreak, Window

EMPTY = np.zeros(0, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Batch:
    items: list[Item]
    """Windows (times only, no samples), breaks and notices, in each stream's order."""
    features: np.ndarray
    """[W, n_mels, frames] normalised log-MEL of the W windows among `items` (empty when W = 0)."""
    levels: np.ndarray
    """[W] RMS levels in dBFS."""


def make(frames: SharedFrames, items: Sequence[Item]) -> tuple[torch.Tensor | None, np.ndarray]:
    """Features and levels of the windows among `items` (None without windows; breaks still reach `frames`)."""
    windows = [item for item in items if isinstance(item, Window)]
    if not windows:
        for item in items:
            if isinstance(item, StreamBreak):
                frames.forget(item.stream)
        return None, EMPTY
    with torch.inference_mode():
        features = frames.features(items).contiguous()
    with frames.timed("level"):
        return features, window_levels(windows)


def encode(items: Sequence[Item], features: torch.Tensor | None, levels: np.ndarray,
           **extra: Any) -> list[bytes | memoryview | np.ndarray]:
    """The multipart message of a batch; `extra` names go into the header beside the items."""
    header: dict[str, Any] = {"items": [_row(item) for item in items], **extra}
    if features is None:
        return [json.dumps(header).encode()]
    header["shape"] = list(features.shape)
    return [json.dumps(header).encode(), features.numpy(), levels]


def decode(parts: Sequence[zmq.Frame]) -> tuple[dict[str, Any], Batch]:
    """(header, batch) of a received message; the arrays view the received frames (no copy)."""
    header = json.loads(parts[0].bytes)
    items = [_item(row) for row in header.get("items", ())]
    features = np.frombuffer(parts[1].buffer, dtype=np.float32).reshape(header["shape"]) if len(parts) > 1 \
        else EMPTY
    levels = np.frombuffer(parts[2].buffer, dtype=np.float32) if len(parts) > 2 else EMPTY
    return header, Batch(items, features, levels)


def join(batches: Sequence[Batch]) -> Batch:
    """One batch of all `batches`' items, features and levels, in order."""
    if len(batches) == 1:
        return batches[0]
    with_windows = [batch.features for batch in batches if len(batch.levels)]
    return Batch([item for batch in batches for item in batch.items],
                 np.concatenate(with_windows) if with_windows else EMPTY,
                 np.concatenate([batch.levels for batch in batches]) if batches else EMPTY)


def _row(item: Item) -> list:
    """An item as JSON, windows without their samples."""
    if isinstance(item, Window):
        return ["window", item.stream, item.rate, item.start, item.end, item.wall_start]
    if isinstance(item, StreamBreak):
        return ["break", item.stream, item.reason, item.start, item.end, item.wall_start]
    return ["notice", item.stream, item.status, item.time, item.wall]


def _item(row: list) -> Item:
    kind, stream, *rest = row
    if kind == "window":
        return Window(stream, *rest, samples=EMPTY)
    if kind == "break":
        return StreamBreak(stream, *rest)
    return SourceNotice(stream, *rest)
