"""Recent window embeddings per stream, so a speaker can be enrolled from "ch3, 03:06–03:41".

Only the 64-d embeddings are kept (a few hundred bytes a window), never audio: `seconds` of history
for at most `streams` streams, the least recently active stream forgotten first.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import torch

from voicewatch.windows import Window


class EmbeddingHistory:
    def __init__(self, seconds: float, hop_s: float, streams: int) -> None:
        self.length = int(seconds / hop_s) if seconds > 0 else 0
        self.streams = streams
        self._entries: collections.OrderedDict[str, collections.deque[tuple[float, float, torch.Tensor]]] = (
            collections.OrderedDict())

    def record(self, windows: Sequence[Window], embeddings: torch.Tensor) -> None:
        if not self.length or not windows:
            return
        vectors = embeddings.detach().cpu()
        for window, vector in zip(windows, vectors, strict=True):
            entries = self._entries.get(window.stream)
            if entries is None:
                entries = self._entries[window.stream] = collections.deque(maxlen=self.length)
                while len(self._entries) > self.streams:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(window.stream)
            entries.append((window.start, window.end, vector))

    def between(self, stream: str, start: float, end: float) -> tuple[torch.Tensor, float]:
        """Embeddings of the windows wholly inside [start, end] and the seconds they span."""
        inside = [(s, e, v) for s, e, v in self._entries.get(stream, ()) if s >= start and e <= end]
        if not inside:
            return torch.zeros(0), 0.0
        return torch.stack([v for _, _, v in inside]), inside[-1][1] - inside[0][0]
