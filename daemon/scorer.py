"""One batched scorer per device: log-MEL features in, bank scores out.

Features are made wherever the windows are (the core's scoring thread, a scan worker process); the
scorer owns the embedder's device. On CUDA, features that arrive in host memory are staged in one
pinned buffer and cross to the device in one transfer per batch; embedding, the score shift and the
bank product run there and only the [B, S] scores come back. On the CPU the same work runs on torch's
CPU threads.
"""

from __future__ import annotations

import numpy as np
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.embedder import Embedder


class DeviceScorer:
    def __init__(self, embedder: Embedder, max_batch: int = 2048) -> None:
        self.embedder = embedder
        self.device = embedder.device
        self.max_batch = max_batch
        self._staging: torch.Tensor | None = None
        """Pinned host buffer that features bound for a CUDA device pass through (grown on demand)."""
        self._copied: torch.cuda.Event | None = None
        """Marks the end of the last transfer out of the staging buffer."""

    def to_device(self, features: torch.Tensor) -> torch.Tensor:
        """`features` on the scorer's device: host features go through the pinned buffer in one transfer."""
        if features.device == self.device:
            return features
        if self.device.type != "cuda" or features.device.type != "cpu":
            return features.to(self.device)
        if self._copied is not None:
            self._copied.synchronize()  # the previous batch has left the buffer
        size = features.numel()
        if self._staging is None or self._staging.numel() < size:
            self._staging = torch.empty(size, dtype=torch.float32, pin_memory=True)
        staged = self._staging[:size].view(features.shape)
        staged.copy_(features)
        moved = staged.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return moved

    @torch.inference_mode()
    def embed(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, n_mels, frames] → ([B, D] embeddings, [B] score shifts), both on the scorer's device."""
        features = self.to_device(features)
        out = torch.empty(len(features), self.embedder.dim, device=self.device)
        shifts = torch.empty(len(features), device=self.device)
        for start in range(0, len(features), self.max_batch):
            batch = features[start:start + self.max_batch]
            out[start:start + self.max_batch] = self.embedder.embed_features(batch)
            shifts[start:start + self.max_batch] = self.embedder.score_shift(batch)
        return out, shifts

    @torch.inference_mode()
    def match(self, embeddings: torch.Tensor, shifts: torch.Tensor, bank: SpeakerBank) -> np.ndarray:
        """[B, S] bank scores (speakers in `bank.names` order) with each window's shift added, on the host."""
        return (bank.score(embeddings) + shifts[:, None]).cpu().numpy()

    def score(self, features: torch.Tensor, bank: SpeakerBank) -> np.ndarray:
        """[B, S] bank scores of the windows whose log-MEL features these are."""
        return self.match(*self.embed(features), bank)
