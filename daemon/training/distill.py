"""Distillation from a teacher speaker encoder (`voicewatch train --teacher`).

The teacher embeds each clean training window once, before training; every augmented copy of that
window is then pulled towards the clean window's teacher embedding, beside the triplet loss:
`1 − cos(head(student), teacher)`, where `head` is a linear map from the student's embedding size to
the teacher's that exists only during training. The shipped model is the student alone: the teacher
is never needed at run time.

A teacher is `resemblyzer` (the optional `peer` extra) or any voicewatch model file (for example a
wider net than the speed budget allows at run time).
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
    """A voicewatch model file as the teacher."""

    def __init__(self, path: Path) -> None:
        from voicewatch.embedder import Embedder

        self.name = str(path)
        self.embedder = Embedder.load(path, device="cpu")
        self.dim = self.embedder.dim

    def embed(self, waves: torch.Tensor, rate: int) -> torch.Tensor:
        return self.embedder.embed(waves, rate)


class ResemblyzerTeacher:
    def __init__(self) -> None:
        from voicewatch.peer import load_peer

        self.peer = load_peer("resemblyzer")
        self.name, self.dim = "resemblyzer", 256

    def embed(self, waves: torch.Tensor, rate: int) -> torch.Tensor:
        return self.peer.embed(waves, rate)


def load_teacher(spec: str) -> Teacher:
    """`resemblyzer` or the path of a voicewatch model; ValueError (PeerUnavailable) when unusable."""
    if spec == "resemblyzer":
        return ResemblyzerTeacher()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--teacher {spec!r} is neither 'resemblyzer' nor a model file")
    return ModelTeacher(path)


def teacher_targets(teacher: Teacher, windows: np.ndarray, rate: int, batch: int = 64) -> torch.Tensor:
    """The teacher's unit embeddings of [N, T] windows, in batches: [N, teacher.dim] float32."""
    with torch.inference_mode():
        parts = [teacher.embed(torch.from_numpy(windows[i:i + batch]), rate).float()
                 for i in range(0, len(windows), batch)]
    return torch.cat(parts) if parts else torch.empty(0, teacher.dim)


def distill_loss(head: torch.nn.Linear, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of `1 − cos(head(e), t)` over the batch."""
    return (1 - F.cosine_similarity(head(embeddings), targets, dim=1)).mean()
