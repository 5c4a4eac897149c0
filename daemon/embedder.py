"""The conv1d speaker embedder: log-MEL (mels as channels) → unit vector, and its checkpoint format.

A checkpoint is one safetensors file: the weights, plus JSON metadata with the architecture, the
feature settings the model was trained on and a format version. Nothing is unpickled on load. A model
may also carry a score shift (scoreshift.py, `voicewatch calibrate`): its tensors are stored under
`score_shift.` and its conditions in the metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from voicewatch.atomicfile import atomic_write_bytes
from voicewatch.bank import DEFAULT_THRESHOLD
from voicewatch.features import FeatureExtractor, FeatureSettings, pick_device
from voicewatch.scoreshift import ScoreShift
from voicewatch.shipped import DEFAULT_MODEL

CHECKPOINT_FORMAT = "voicewatch.embedder"
CHECKPOINT_VERSION = 1
SHIFT_PREFIX = "score_shift."


POOLINGS = ("mean", "mean+std")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Shape of the net; depth = len(channels)."""

    channels: tuple[int, ...] = (128, 128, 128)
    """Output channels of each Conv1d → BatchNorm → ReLU → MaxPool block."""
    kernel_size: int = 3
    embedding_dim: int = 64
    """Per member."""
    members: int = 1
    """Nets of this shape trained apart and run side by side (`SideBySide`, `voicewatch fuse`)."""
    centre_bands: tuple[bool, ...] = ()
    """Per member: True subtracts each mel band's mean over the window from the features first, so that a
    channel's colouring cancels — and so does the voice's average spectrum; False keeps the spectrum's shape.
    Left empty: every member centres."""
    pooling: str = "mean"
    """Over time: `mean` (global average pool) or `mean+std` (the standard deviation of each channel beside
    its mean, so that how a voice varies over the window reaches the embedding too)."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling is {self.pooling!r}, not one of {', '.join(POOLINGS)}")
        if not self.centre_bands:  # frozen: set once, here
            object.__setattr__(self, "centre_bands", (True,) * self.members)
        if len(self.centre_bands) != self.members:
            raise ValueError(f"centre_bands has {len(self.centre_bands)} entries for {self.members} member(s)")

    @property
    def dim(self) -> int:
        return self.embedding_dim * self.members

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        members = int(data.get("members", 1))  # models from before `fuse` are one net
        if members < 1:
            raise ValueError(f"members is {members}, not 1 or more")
        centre_bands = data.get("centre_bands", [True] * members)  # models from before it centred every band
        if not isinstance(centre_bands, list) or len(centre_bands) != members or not all(
                isinstance(c, bool) for c in centre_bands):
            raise ValueError(f"centre_bands is {centre_bands!r}, not a list of {members} true/false")
        return cls(
            channels=tuple(int(c) for c in data["channels"]),
            kernel_size=int(data["kernel_size"]),
            embedding_dim=int(data["embedding_dim"]),
            members=members,
            centre_bands=tuple(centre_bands),
            pooling=str(data.get("pooling", "mean")),  # models from before statistics pooling average
        )


def centre_each_band(features: torch.Tensor) -> torch.Tensor:
    """[..., n_mels, frames] less each band's mean over the frames: a channel's fixed colouring cancels."""
    return features - features.mean(dim=-1, keepdim=True)


def pool_over_time(hidden: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, C, T] (or [B, C, 1, T]) → [B, C] means, or [B, 2C] means and standard deviations for `mean+std`."""
    hidden = hidden.flatten(2)
    mean = hidden.mean(dim=-1)
    if pooling == "mean":
        return mean
    return torch.cat([mean, hidden.var(dim=-1, unbiased=False).clamp_min(1e-8).sqrt()], dim=1)


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
        )


class EmbedderNet(nn.Module):
    """Conv1d blocks over time → global average pool (with the standard deviation, `mean+std`) → linear → L2
    normalisation."""

    def __init__(self, n_mels: int, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        widths = (n_mels, *architecture.channels)
        self.blocks = nn.Sequential(
            *(ConvBlock(i, o, architecture.kernel_size) for i, o in zip(widths, widths[1:], strict=False))
        )
        pooled_width = widths[-1] * (2 if architecture.pooling == "mean+std" else 1)
        self.project = nn.Linear(pooled_width, architecture.embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B, embedding_dim] unit vectors."""
        if self.architecture.centre_bands[0]:
            features = centre_each_band(features)
        pooled = pool_over_time(self.blocks(features), self.architecture.pooling)
        return F.normalize(self.project(pooled), dim=-1)


class SideBySide(nn.Module):
    """Nets of one shape trained apart, run on the same features: their unit embeddings joined and divided by
    √N, so a cosine is the mean of the members' cosines."""

    def __init__(self, n_mels: int, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self.members = nn.ModuleList(
            EmbedderNet(n_mels, dataclasses.replace(architecture, members=1, centre_bands=(centred,)))
            for centred in architecture.centre_bands
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B, members × embedding_dim] unit vectors."""
        return torch.cat([member(features) for member in self.members], dim=1) / math.sqrt(len(self.members))


def serve(net: EmbedderNet | SideBySide, features: torch.Tensor) -> torch.Tensor:
    """`net(features)` for inference (eval mode), equal to float rounding: each BatchNorm folded into its
    convolution, and the activations laid out channels-last as images one row high ([B, C, 1, T] in NHWC),
    the layout in which oneDNN's CPU convolutions take and give activations without reordering them; in the
    layout Conv1d uses, every member reordered the whole input batch before its first convolution (7.8 ms
    beside the convolution's 13.7 ms for 256 windows, docs/performance.md). Each input kind (band-centred or
    not) is laid out once for all members. The folding is redone on every call (a few small tensor operations
    per block; one window is served as fast as the net runs it): training may change a net's weights between
    calls."""
    members = net.members if isinstance(net, SideBySide) else [net]
    laid_out: dict[bool, torch.Tensor] = {}
    outputs = []
    for member in members:
        centre = member.architecture.centre_bands[0]
        if centre not in laid_out:
            kind = centre_each_band(features) if centre else features
            laid_out[centre] = kind.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        hidden = laid_out[centre]
        for conv, norm, _relu, _pool in member.blocks:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            weight = (conv.weight * scale[:, None, None]).unsqueeze(2)
            bias = norm.bias - norm.running_mean * scale
            hidden = F.max_pool2d(F.relu_(F.conv2d(hidden, weight, bias, padding=(0, conv.padding[0]))), (1, 2))
        outputs.append(F.normalize(member.project(pool_over_time(hidden, member.architecture.pooling)), dim=-1))
    if isinstance(net, EmbedderNet):
        return outputs[0]
    return torch.cat(outputs, dim=1) / math.sqrt(len(outputs))


def build_net(n_mels: int, architecture: Architecture) -> EmbedderNet | SideBySide:
    return EmbedderNet(n_mels, architecture) if architecture.members == 1 else SideBySide(n_mels, architecture)


def fuse(nets: list[EmbedderNet]) -> SideBySide:
    """One net that runs `nets` (single nets of one shape, band-centring or not) side by side."""
    shapes = {dataclasses.replace(net.architecture, centre_bands=()) for net in nets}
    if len(shapes) != 1 or next(iter(shapes)).members != 1:
        raise ValueError(f"fuse needs single nets of one shape, not {sorted(map(str, shapes))}")
    centre_bands = tuple(net.architecture.centre_bands[0] for net in nets)
    joined = SideBySide(nets[0].blocks[0][0].in_channels,
                        dataclasses.replace(nets[0].architecture, members=len(nets), centre_bands=centre_bands))
    for member, net in zip(joined.members, nets, strict=True):
        member.load_state_dict(net.state_dict())
    return joined.eval()


class CheckpointError(ValueError):
    """A model file that is missing, corrupt, or not a voicewatch embedder of a known version."""


class Embedder:
    """Feature front-end + net on one device; the object the pipeline and the public API use."""

    def __init__(
        self,
        net: EmbedderNet | SideBySide,
        settings: FeatureSettings,
        device: torch.device | str = "cpu",
        model_id: str = "untrained",
        threshold: float = DEFAULT_THRESHOLD,
        shift: ScoreShift | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.settings = settings
        self.net = net.to(self.device).eval()
        self.shift = shift.to(self.device).eval() if shift is not None else None
        """Raises each window's scores by the amount its condition costs (`score_shift`); None: no shift."""
        self.features = FeatureExtractor(settings).to(self.device)
        self.model_id = model_id
        self.threshold = threshold
        """The threshold chosen for this model on validation data when it was trained (`info.threshold`):
        new speaker banks start from it."""

    @property
    def dim(self) -> int:
        return self.net.architecture.dim

    @classmethod
    def create(
        cls, architecture: Architecture = Architecture(), settings: FeatureSettings = FeatureSettings(),
        device: torch.device | str = "cpu",
    ) -> Embedder:
        """A fresh, randomly initialised embedder (for training)."""
        return cls(build_net(settings.n_mels, architecture), settings, device)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str = "auto") -> Embedder:
        """Load a checkpoint; `None` loads the model shipped with voicewatch."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        try:
            with safetensors.safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except FileNotFoundError:
            raise CheckpointError(f"model file {path} does not exist") from None
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise CheckpointError(f"model file {path} is not a readable safetensors file: {exc}") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a voicewatch embedder (format={meta.get('format')!r})")
        if meta.get("version") != str(CHECKPOINT_VERSION):
            raise CheckpointError(
                f"{path} has checkpoint version {meta.get('version')!r}; this voicewatch reads {CHECKPOINT_VERSION}"
            )
        try:
            architecture = Architecture.from_dict(json.loads(meta["architecture"]))
            settings = FeatureSettings(**json.loads(meta["features"]))
            net = build_net(settings.n_mels, architecture)
            net.load_state_dict({key: value for key, value in state.items() if not key.startswith(SHIFT_PREFIX)})
            shift = _load_shift(settings, meta, state)
            info = json.loads(meta.get("info", "{}"))
            if not isinstance(info, dict):
                raise ValueError(f"info is {type(info).__name__}, not an object")
            threshold = float(DEFAULT_THRESHOLD if info.get("threshold") is None else info["threshold"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path} does not describe a valid embedder: {exc}") from None
        if not -1.0 <= threshold <= 1.0:
            raise CheckpointError(f"{path} carries threshold {threshold}, outside -1.0 to 1.0")
        return cls(net, settings, pick_device(device), model_id=_weights_id(state), threshold=threshold, shift=shift)

    def save(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
        """Write the checkpoint atomically (temp file in the same folder, then rename)."""
        state = {key: value.detach().cpu().contiguous() for key, value in self.net.state_dict().items()}
        if self.shift is not None:
            state |= {SHIFT_PREFIX + key: value.detach().cpu().contiguous() for key, value in self.shift.state_dict().items()}
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": str(CHECKPOINT_VERSION),
            "architecture": json.dumps(dataclasses.asdict(self.net.architecture)),
            "features": json.dumps(dataclasses.asdict(self.settings)),
            "info": json.dumps(extra or {}),
        }
        if self.shift is not None:
            meta["score_shift"] = json.dumps({"conditions": list(self.shift.conditions)})
        atomic_write_bytes(Path(path), safetensors.torch.save(state, metadata=meta))
        self.model_id = _weights_id(state)

    @torch.inference_mode()
    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B, D] unit vectors on the embedder's device (`serve`: the net folded for
        inference); the pipeline keeps them there for matching."""
        return serve(self.net, features.to(self.device))

    @torch.inference_mode()
    def score_shift(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → [B] amount to add to each window's bank scores (zeros without a shift)."""
        if self.shift is None:
            return torch.zeros(features.shape[0], device=self.device)
        return self.shift(features.to(self.device))

    @torch.inference_mode()
    def embed(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, T] (or [T]) waveform at any rate → [B, D] unit vectors, on the input's device: the work runs on
        the embedder's device, and a caller holding CPU tensors gets CPU tensors back whichever that is."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"expected a [B, T] waveform, got shape {tuple(wave.shape)}")
        return serve(self.net, self.features(wave, sample_rate)).to(wave.device)


def _load_shift(settings: FeatureSettings, meta: dict[str, str], state: dict[str, torch.Tensor]) -> ScoreShift | None:
    """The score shift a checkpoint carries, or None; KeyError / ValueError / RuntimeError when malformed."""
    stored = {key[len(SHIFT_PREFIX):]: value for key, value in state.items() if key.startswith(SHIFT_PREFIX)}
    if "score_shift" not in meta and not stored:
        return None
    conditions = json.loads(meta["score_shift"])["conditions"]
    if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
        raise ValueError(f"score_shift conditions must be a list of names, not {conditions!r}")
    shift = ScoreShift(settings.n_mels, tuple(conditions))
    shift.load_state_dict(stored)
    if not all(torch.isfinite(value).all() for value in stored.values()):
        raise ValueError("the score shift holds values that are not finite")
    return shift.eval()


def _weights_id(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of the weights: banks record it to refuse a different embedder."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
