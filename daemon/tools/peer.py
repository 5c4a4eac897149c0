"""Peer speaker encoders to measure ours against, in the same run (`eval --peer`, `bench`).

Resemblyzer (optional extra `peer`: pip install 'voicewatch[peer]') ships its weights inside its
wheel. Its own `embed_utterance` handles one utterance at a time and imports a VAD we do not need;
here its LSTM is rebuilt from the package's hyper-parameters, its weights are loaded safely
(`weights_only=True`) from the installed package, and 2 s windows are embedded batched the way
`embed_utterance` would: volume normalised to −30 dBFS, 40 mel bands at 16 kHz (25 ms / 10 ms),
1.6 s partials every 0.76 s (the last zero-padded), their embeddings averaged and normalised.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio

PEERS = ("resemblyzer",)
HOP = 160
"""Resemblyzer's mel hop: 10 ms at 16 kHz."""


class PeerUnavailable(ValueError):
    """The peer's package is not installed (or not usable): the message says what to install."""


class Resemblyzer(torch.nn.Module):
    name = "resemblyzer"
    sample_rate = 16000
    partial_frames = 160
    target_dbfs = -30.0

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same to the user
            raise PeerUnavailable(f"cannot load Resemblyzer's weights from {weights}: {exc}") from None
        self.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in ("lstm", "linear")})
        self.mel = torchaudio.transforms.MelSpectrogram(self.sample_rate, n_fft=400, hop_length=160, n_mels=40,
                                                        mel_scale="slaney", norm="slaney", pad_mode="constant")
        self.eval()

    @torch.inference_mode()
    def embed(self, waves: torch.Tensor, rate: int | None = None) -> torch.Tensor:
        """[B, T] at `rate` (default: the peer's own `sample_rate`) → [B, 256] unit vectors."""
        waves = waves.float()
        if rate is not None and rate != self.sample_rate:
            waves = torchaudio.functional.resample(waves, rate, self.sample_rate)
        rms = waves.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        waves = waves * (10 ** (self.target_dbfs / 20) / rms).clamp_min(1.0)  # Resemblyzer only raises the level
        starts = self.partial_starts(waves.shape[1])
        waves = F.pad(waves, (0, max(0, (starts[-1] + self.partial_frames) * HOP - waves.shape[1])))
        mels = self.mel(waves).transpose(1, 2)  # [B, frames, 40]
        partials = torch.stack([mels[:, s:s + self.partial_frames] for s in starts], dim=1)  # [B, P, 160, 40]
        _, (hidden, _) = self.lstm(partials.flatten(0, 1))
        embeddings = F.normalize(F.relu(self.linear(hidden[-1])), dim=1).view(len(waves), len(starts), -1)
        return F.normalize(embeddings.mean(dim=1), dim=1)

    @classmethod
    def partial_starts(cls, samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
        """First mel frame of each 1.6 s partial, as Resemblyzer's `compute_partial_slices`."""
        frames = math.ceil((samples + 1) / HOP)
        step = round(cls.sample_rate / rate / HOP)
        starts = list(range(0, max(1, frames - cls.partial_frames + step + 1), step))
        coverage = (samples - starts[-1] * HOP) / (cls.partial_frames * HOP)
        return starts[:-1] if coverage < min_coverage and len(starts) > 1 else starts


def load_peer(name: str) -> Resemblyzer:
    if name not in PEERS:
        raise PeerUnavailable(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):  # a broken or blocked installation
        spec = None
    if spec is None or spec.origin is None:
        raise PeerUnavailable("the Resemblyzer peer is not installed: pip install 'voicewatch[peer]'")
    weights = Path(spec.origin).parent / "pretrained.pt"
    if not weights.is_file():
        raise PeerUnavailable(f"the installed resemblyzer package has no weights at {weights}")
    return Resemblyzer(weights)
