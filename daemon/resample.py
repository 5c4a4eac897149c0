"""Batched band-limited resampling with torchaudio's own sinc kernel, without its zero taps.

torchaudio's `Resample` convolves every output phase with a kernel as long as the whole input
period plus the filter (348 taps for 48 → 22.05 kHz, whose 147 phases each use only ~27 of them).
Here the phases are cut into a few blocks of neighbours; each block is one matrix product of the
input, framed by the period, with only the taps its phases use. Same kernel, same output (to float
rounding), less time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio

BLOCKS = 6
"""Phase blocks: fewer means more zero taps per product, more means more (small) products."""


class BlockResample(torch.nn.Module):
    def __init__(self, orig_freq: int, new_freq: int) -> None:
        super().__init__()
        reference = torchaudio.transforms.Resample(orig_freq, new_freq)
        gcd = math.gcd(orig_freq, new_freq)
        self.orig, self.new = orig_freq // gcd, new_freq // gcd
        self.width = reference.width
        kernel = reference.kernel[:, 0, :]  # [phases, taps]
        self.taps = kernel.shape[1]
        self.blocks: list[tuple[int, int, int]] = []
        """(first phase, first tap, tap count) per block; the block's weights are buffer `block<i>`."""
        used = kernel != 0
        for index, phases in enumerate(torch.arange(self.new).chunk(min(BLOCKS, self.new))):
            first, last = int(phases[0]), int(phases[-1]) + 1
            columns = torch.nonzero(used[first:last].any(dim=0)).flatten()
            start, stop = int(columns.min()), int(columns.max()) + 1
            self.blocks.append((first, start, stop - start))
            self.register_buffer(f"block{index}", kernel[first:last, start:stop].T.contiguous())

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """[B, T] → [B, ceil(T × new / orig)], as torchaudio's Resample."""
        length = waves.shape[-1]
        padded = F.pad(waves, (self.width, self.width + self.orig))
        periods = (padded.shape[-1] - self.taps) // self.orig + 1
        out = torch.empty(waves.shape[0], periods, self.new, dtype=waves.dtype, device=waves.device)
        for index, (phase, tap, count) in enumerate(self.blocks):
            weights = getattr(self, f"block{index}")
            framed = padded[:, tap:tap + (periods - 1) * self.orig + count].unfold(-1, count, self.orig)
            out[:, :, phase:phase + weights.shape[1]] = framed @ weights
        return out.reshape(waves.shape[0], -1)[:, : math.ceil(self.new * length / self.orig)]


def make_resampler(orig_freq: int, new_freq: int) -> torch.nn.Module:
    """BlockResample, except for ratios with very few phases (e.g. ×2), where torchaudio's is faster."""
    if new_freq // math.gcd(orig_freq, new_freq) < BLOCKS and orig_freq < new_freq:
        return torchaudio.transforms.Resample(orig_freq, new_freq)
    return BlockResample(orig_freq, new_freq)
