"""Additive-margin softmax over the training speakers (`voicewatch train --classify-weight`).

A training-only head beside the triplet loss: unit class vectors W, logits `s · (cos(e, W_c) − m·[c = y])`
(CosFace / AM-softmax). Each step's gradient then places the batch against every training speaker, not
only the sixteen in the batch. The shipped model is the embedder alone; the head is dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class MarginClassifier(torch.nn.Module):
    def __init__(self, dim: int, classes: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(classes, dim) * dim ** -0.5)
        self.scale, self.margin = scale, margin

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of unit `embeddings` [B, D] against their speaker `labels` [B]."""
        cosines = embeddings @ F.normalize(self.weight, dim=1).T
        margins = F.one_hot(labels, cosines.shape[1]) * self.margin
        return F.cross_entropy(self.scale * (cosines - margins), labels)
