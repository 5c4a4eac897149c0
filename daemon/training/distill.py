"""Distillation from a teacher speaker encoder (`voicewatch train --teacher`).

Beside the triplet loss, the student's embedding is pulled towards the teacher's:
`1 − cos(head(student), teacher)`, where `head` is a linear map from the student's embedding size to
the teacher's that exists only during training. The shipped model is the student alone: the teacher
is never needed at run time.

A teacher is
- `resemblyzer` (the optional `peer` extra), which embeds each clean training window once before
  training; every augmented copy of the window is pulled towards that clean embedding; or
- one or more voicewatch model files (`A,B,...`: an ensemble, whose embedding is the members'
  concatenated and divided by √N, so that its cosine is the mean of theirs). They read the same
  features as the student and embed each batch as it is drawn, augmented copies included: the
  student learns what the ensemble makes of exactly what it sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


class Teacher(Protocol):
    name: str
    dim: int

    def embed(self, waves: torch.Tensor, rate: int) -> torch.Tensor:
        """[B, T] at `rate` → [B, dim] unit vectors."""


class ModelTeacher:
    """Voicewatch model files as the teacher, on the student's own features."""

    def __init__(self, paths: list[Path]) -> None:
        from voicewatch.embedder import Embedder

        self.name = ",".join(str(p) for p in paths)
        self.members = [Embedder.load(p, device="cpu") for p in paths]
        self.settings = self.members[0].settings
        if any(m.settings != self.settings for m in self.members):
            raise ValueError(f"--teacher {self.name}: the models were trained on different features")
        self.dim = sum(m.dim for m in self.members)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B, dim] unit vectors: the members' embeddings side by side, ÷ √N."""
        with torch.no_grad():  # not inference_mode: the targets take part in the (student's) backward pass
            joined = torch.cat([m.net(features) for m in self.members], dim=1)
        return joined / len(self.members) ** 0.5


class ResemblyzerTeacher:
    def __init__(self) -> None:
        from voicewatch.tools.peer import load_peer

        self.peer = load_peer("resemblyzer")
        self.name, self.dim = "resemblyzer", 256

    def embed(self, waves: torch.Tensor, rate: int) -> torch.Tensor:
        return self.peer.embed(waves, rate)


def load_teacher(spec: str) -> ResemblyzerTeacher | ModelTeacher:
    """`resemblyzer` or comma-separated voicewatch model paths; ValueError (PeerUnavailable) when unusable."""
    if spec == "resemblyzer":
        return ResemblyzerTeacher()
    paths = [Path(part) for part in spec.split(",")]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"--teacher {str(path)!r} is neither 'resemblyzer' nor a model file")
    return ModelTeacher(paths)


def teacher_targets(teacher: Teacher, windows: np.ndarray, rate: int, batch: int = 64) -> torch.Tensor:
    """The teacher's unit embeddings of [N, T] windows, in batches: [N, teacher.dim] float32."""
    with torch.inference_mode():
        parts = [teacher.embed(torch.from_numpy(windows[i:i + batch]), rate).float()
                 for i in range(0, len(windows), batch)]
    return torch.cat(parts) if parts else torch.empty(0, teacher.dim)


def distill_loss(head: torch.nn.Linear, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of `1 − cos(head(e), t)` over the batch."""
    return (1 - F.cosine_similarity(head(embeddings), targets, dim=1)).mean()


def similarity_loss(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the student's and the teacher's pairwise cosines in the batch."""
    return ((embeddings @ embeddings.T - targets @ targets.T) ** 2).mean()
