"""Recent window embeddings per stream, so a speaker can be enrolled from "ch3, 03:06–03:41".

Only embeddings are kept, never audio: `seconds` of history for at most `streams` streams, the least
recently active stream forgotten first. Each stream's history is one ring of float16 rows (and their
stream times), allocated whole at the stream's first window: a stream costs the same from its first
window on, `length × (2 × dim + 16)` bytes, and nothing is kept per window but a row.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from voicewatch.windows import Window


@dataclasses.dataclass
class _Ring:
    vectors: np.ndarray
    """[length, dim] float16 embeddings."""
    spans: np.ndarray
    """[length, 2] float64 stream times (start, end) of each row's window."""
    written: int = 0
    """Rows written since the ring was made; the next one goes to `written % length`."""

    @classmethod
    def allocate(cls, length: int, dim: int) -> _Ring:
        vectors, spans = np.empty((length, dim), dtype=np.float16), np.empty((length, 2), dtype=np.float64)
        vectors.fill(0)  # touch every page now: the stream's cost is paid at its first window, not over minutes
        spans.fill(np.nan)
        return cls(vectors, spans)

    def in_order(self) -> np.ndarray:
        """Row indices, oldest first."""
        length = len(self.vectors)
        if self.written <= length:
            return np.arange(self.written)
        return (np.arange(length) + self.written) % length


class EmbeddingHistory:
    def __init__(self, seconds: float, hop_s: float, streams: int) -> None:
        self.length = int(seconds / hop_s) if seconds > 0 else 0
        self.streams = streams
        self._rings: collections.OrderedDict[str, _Ring] = collections.OrderedDict()

    def record(self, windows: Sequence[Window], embeddings: torch.Tensor) -> None:
        if not self.length or not windows:
            return
        vectors = embeddings.detach().to("cpu", torch.float16).numpy()
        for window, vector in zip(windows, vectors, strict=True):
            ring = self._rings.get(window.stream)
            if ring is None or ring.vectors.shape[1] != len(vector):  # a new stream, or a model of another size
                ring = self._rings[window.stream] = _Ring.allocate(self.length, len(vector))
                while len(self._rings) > self.streams:
                    self._rings.popitem(last=False)
            self._rings.move_to_end(window.stream)
            row = ring.written % self.length
            ring.vectors[row] = vector
            ring.spans[row] = window.start, window.end
            ring.written += 1

    def between(self, stream: str, start: float, end: float) -> tuple[torch.Tensor, float]:
        """float32 embeddings of the windows wholly inside [start, end], oldest first, and the seconds they span."""
        ring = self._rings.get(stream)
        if ring is None:
            return torch.zeros(0), 0.0
        rows = ring.in_order()
        spans = ring.spans[rows]
        rows = rows[(spans[:, 0] >= start) & (spans[:, 1] <= end)]
        if not len(rows):
            return torch.zeros(0), 0.0
        return torch.from_numpy(ring.vectors[rows].astype(np.float32)), float(ring.spans[rows[-1], 1] - ring.spans[rows[0], 0])

    def clear(self) -> None:
        """Forget every stream (a new model's embeddings are not comparable with the old one's)."""
        self._rings.clear()

    def held_bytes(self) -> int:
        return sum(ring.vectors.nbytes + ring.spans.nbytes for ring in self._rings.values())
