"""External key-value memory for training, after Kaiser, Nachum, Roy & Bengio, "Learning to Remember
Rare Events" (ICLR 2017): `voicewatch train --memory SIZE`.

Keys are unit embeddings, values speaker labels, ages count updates since a slot was last used.
Every step, each anchor is compared with all keys by one matrix product. The loss asks the nearest
key of the anchor's own speaker to beat the nearest key of any other speaker by the margin, so the
net is trained against what it has seen long before the current batch — rare voices included.
Then the memory learns: where the nearest key already holds the right speaker, it moves towards
the anchor (average, renormalise) and its age resets; otherwise the anchor is written into the
oldest slot. No per-item Python loops: lookups are products, updates are scatters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Memory:
    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        self.keys = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.values = torch.full((size,), -1, dtype=torch.long)
        """Speaker label per slot; -1 = empty."""
        self.ages = torch.zeros(size, dtype=torch.long)

    def loss(self, queries: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
        """Mean `max(0, margin + cos(q, nearest wrong key) − cos(q, nearest right key))` over the anchors
        whose speaker the memory already holds (zero when it holds none of them)."""
        sims = queries @ self.keys.T  # keys are constants here: only the net learns from this
        right = self.values[None, :] == labels[:, None]
        filled = self.values[None, :] >= 0
        positive = sims.masked_fill(~right, -2.0).max(dim=1).values
        negative = sims.masked_fill(right | ~filled, -2.0).max(dim=1).values
        known = right.any(dim=1) & (filled & ~right).any(dim=1)
        if not known.any():
            return queries.sum() * 0.0
        return F.relu(margin + negative - positive)[known].mean()

    @torch.no_grad()
    def update(self, queries: torch.Tensor, labels: torch.Tensor) -> None:
        queries = F.normalize(queries.detach(), dim=1)
        nearest = (queries @ self.keys.T).argmax(dim=1)
        hit = self.values[nearest] == labels
        self.ages += 1
        if hit.any():
            slots = nearest[hit]
            self.keys[slots] = F.normalize(self.keys[slots] + queries[hit], dim=1)
            self.ages[slots] = 0
        new_keys, new_values = queries[~hit][-len(self.keys):], labels[~hit][-len(self.keys):]
        if len(new_keys):
            oldest = torch.topk(self.ages + torch.rand(len(self.ages)), len(new_keys)).indices  # random among equals
            self.keys[oldest] = new_keys
            self.values[oldest] = new_values
            self.ages[oldest] = 0
