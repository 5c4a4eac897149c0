"""Log-MEL frames shared between a stream's overlapping windows: each sample is resampled and
transformed once, not once per window that covers it.

With 2 s windows and a 1 s hop, window k+1 starts 50 frames (of 20 ms) into window k, so its first
48 frames are window k's last 48. Only the rest — the new second plus the 1024-sample frame's
overlap — is resampled (with a few ms of context before it, so the resampling filter never sees an
edge there) and transformed; the frames are joined before the per-window mean subtraction.
Windows after a break, after dropped windows, or at rates where frames do not fall on whole input
samples are computed whole, as before. Nothing else changes: the same windows give the same
features, to float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from voicewatch.features import FeatureExtractor
from voicewatch.windows import Item, StreamBreak, Window

CONTEXT_S = 0.004
"""Input before a window's new part that the resampling filter sees (its half-width is < 1 ms)."""
CHUNK_WINDOWS = 64
"""Windows resampled and transformed together: the working set of a chunk (~40 MB at 48 kHz) stays in
cache-friendly bounds, where whole 256-window ticks ran slower per window and held 300 MB at peak."""
Timed = Callable[[str], contextlib.AbstractContextManager[None]]


@dataclasses.dataclass
class _Known:
    """A window whose raw frames the next window of its stream may reuse."""

    rate: int
    start: float
    slot: int
    """Where its raw frames are: an index into this call's windows, or -1 for the kept ones."""
    raw: torch.Tensor | None = None
    """[n_mels, frames] raw log-MEL, for a window of an earlier call."""


class SharedFrames:
    def __init__(self, extractor: FeatureExtractor, timed: Timed | None = None) -> None:
        self.extractor = extractor
        self.settings = extractor.settings
        self.timed: Timed = timed or (lambda _stage: contextlib.nullcontext())
        self.kept: dict[str, _Known] = {}
        """Each stream's last window, with its raw frames."""
        self.shared = 0
        """Windows computed from their new part only (for the benchmark and tests)."""

    def features(self, items: Sequence[Item]) -> torch.Tensor:
        """[B, n_mels, frames] normalised log-MEL of the windows among `items`, in order."""
        windows = [item for item in items if isinstance(item, Window)]
        plan = self._plan(items)
        computed: dict[int, torch.Tensor] = {}
        """Window index → its whole raw frames, or only its new ones when it starts with another's."""
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, (window, step) in enumerate(zip(windows, plan, strict=True)):
            groups.setdefault((window.rate, len(window.samples), 0 if step is None else step[1]), []).append(i)
        for (rate, length, shift), rows in groups.items():
            first, context = self._tail_start(rate, length, shift) if shift else (0, 0)
            computed.update(zip(rows, self._raw([windows[i].samples[first - context:] for i in rows], rate, context),
                                strict=True))
        raws: list[torch.Tensor] = []
        for i, step in enumerate(plan):
            if step is None:
                raws.append(computed[i])
            else:
                source, shift = step
                head = raws[source.slot] if source.slot >= 0 else source.raw
                raws.append(torch.cat([head[:, shift:], computed[i]], dim=1))
                self.shared += 1
        for known in self.kept.values():
            if known.slot >= 0:  # a window of this call: keep its own copy, not a view of the batch
                known.raw, known.slot = raws[known.slot].clone(), -1
        with self.timed("log_mel"):
            return self.extractor.normalise(torch.stack(raws))

    def forget(self, stream: str) -> None:
        self.kept.pop(stream, None)

    def held_bytes(self) -> int:
        return sum(known.raw.nbytes for known in self.kept.values() if known.raw is not None)

    def _plan(self, items: Sequence[Item]) -> list[tuple[_Known, int] | None]:
        """Per window: (the window whose frames it starts with, frames to skip of them), or None = whole."""
        plan: list[tuple[_Known, int] | None] = []
        for item in items:
            if isinstance(item, StreamBreak):
                self.forget(item.stream)
            elif isinstance(item, Window):
                previous = self.kept.get(item.stream)
                shift = self._shift(previous, item)
                plan.append(None if shift is None else (previous, shift))
                self.kept[item.stream] = _Known(item.rate, item.start, slot=len(plan) - 1)
        return plan

    def _shift(self, previous: _Known | None, window: Window) -> int | None:
        """Frames between the previous window's start and this one's, when this one can start with its frames."""
        if previous is None or previous.rate != window.rate:
            return None
        hops = (window.start - previous.start) * self.settings.sample_rate / self.settings.hop_length
        shift = round(hops)
        if abs(hops - shift) > 1e-3 or self._tail_start(window.rate, len(window.samples), shift) is None:
            return None
        return shift

    def _tail_start(self, rate: int, length: int, shift: int) -> tuple[int, int] | None:
        """(first input sample of a window's last `shift` frames, input context before it), when the
        previous window holds its other frames, both fall on whole samples and the resampling filter
        keeps its phase; None otherwise."""
        model = self.settings.sample_rate
        frames = self.settings.frames(length * model // rate)
        if not 0 < shift < frames or length * model % rate:
            return None
        first = (frames - shift) * self.settings.hop_length * rate
        step = rate // math.gcd(rate, model)
        context = step * math.ceil(CONTEXT_S * rate / step)
        if first % model or (first // model) % step or first // model < context:
            return None
        return first // model, context

    def _raw(self, waves: list[np.ndarray], rate: int, context: int) -> list[torch.Tensor]:
        """Raw log-MEL of equal-length waves at `rate`; the first `context` input samples only feed the
        resampling filter and are cut off after it."""
        device = self.extractor.mel.spectrogram.window.device
        raws: list[torch.Tensor] = []
        for start in range(0, len(waves), CHUNK_WINDOWS):
            with self.timed("resample"):
                batch = torch.from_numpy(np.stack(waves[start:start + CHUNK_WINDOWS])).to(device)
                resampled = self.extractor.resample(batch, rate)[:, context * self.settings.sample_rate // rate:]
            with self.timed("log_mel"):
                raws += list(self.extractor.raw_log_mel(resampled))
        return raws
