"""A cache of prepared training windows (`voicewatch train --window-cache DIR`).

Preparing the windows — loading every clip, three augmented copies, log-MEL features — takes longer
than a short training run. Its result depends only on the corpus manifest, the split, the number of
copies, the seed, the speeds, the feature settings and a clean-window teacher, so it is stored under
a hash of those and reused by every run that asks for the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from voicewatch.atomicfile import atomic_write_bytes

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
CACHE_VERSION = 2
"""Raised whenever window preparation changes what it produces, so older files stop matching (2: features keep
each band's mean)."""


def cache_key(corpus: Path, **recipe: Any) -> str:
    manifest = hashlib.sha256((corpus / "manifest.json").read_bytes()).hexdigest()
    described = json.dumps({"version": CACHE_VERSION, "manifest": manifest, **recipe}, sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:20]


def cached(cache: Path | None, key: str, kind: type[T], build: Callable[[], T]) -> T:
    """`build()`'s dataclass of tensors, from `cache/KEY.pt` when present, written there (atomically) when not."""
    if cache is None:
        return build()
    path = cache / f"{key}.pt"
    if path.exists():
        try:
            value = kind(**torch.load(path, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is rebuilt, whatever the reason
            _LOG.warning("%s is not a readable window cache (%s); preparing the windows again", path, exc)
        else:
            _LOG.info("windows from %s", path)
            return value
    value = build()
    buffer = io.BytesIO()
    torch.save({field.name: getattr(value, field.name) for field in dataclasses.fields(value)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return value
