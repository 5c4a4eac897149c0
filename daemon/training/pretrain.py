"""`voicewatch pretrain`: the embedder's conv blocks pre-trained as a convolutional autoencoder.

The customer's notes: encoder = the embedder's Conv1d → BatchNorm → ReLU blocks, each pooled with
MaxPool1d(2, return_indices=True); decoder = the mirror image, MaxUnpool1d with those indices and
ConvTranspose1d back to the input width, the last layer linear. Trained to reconstruct log-MEL
windows without labels (every window of the corpus' training voices, and noise and music), so
the blocks learn the structure of audio before `voicewatch train --init` teaches them voices.
Only the encoder is saved (safetensors, as `blocks.*`), which is all `--init` needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from voicewatch.atomicfile import atomic_write_bytes
from voicewatch.embedder import Architecture, ConvBlock, centre_each_band
from voicewatch.features import FeatureSettings
from voicewatch.training.data import build_windows

_LOG = logging.getLogger(__name__)


class ConvAutoencoder(nn.Module):
    def __init__(self, n_mels: int, architecture: Architecture) -> None:
        super().__init__()
        widths = (n_mels, *architecture.channels)
        k = architecture.kernel_size
        self.blocks = nn.Sequential(*(ConvBlock(i, o, k) for i, o in zip(widths, widths[1:], strict=False)))
        """Named and shaped as EmbedderNet.blocks, so its weights load there."""
        self.unpool = nn.MaxUnpool1d(2)
        self.decoder = nn.ModuleList()
        for index, (wide, narrow) in enumerate(reversed(list(zip(widths, widths[1:], strict=False)))):
            last = index == len(widths) - 2
            layers: list[nn.Module] = [nn.ConvTranspose1d(narrow, wide, k, padding=k // 2)]
            if not last:
                layers += [nn.BatchNorm1d(wide), nn.ReLU()]
            self.decoder.append(nn.Sequential(*layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] → its reconstruction, same shape."""
        x, trail = features, []
        for block in self.blocks:
            conv, norm, relu = block[0], block[1], block[2]
            before = relu(norm(conv(x)))
            x, indices = F.max_pool1d(before, 2, return_indices=True)
            trail.append((indices, before.shape[-1]))
        for layer, (indices, length) in zip(self.decoder, reversed(trail), strict=True):
            x = layer(self.unpool(x, indices, output_size=[length]))
        return x

    def encoder_state(self) -> dict[str, torch.Tensor]:
        return {f"blocks.{key}": value.detach().cpu().contiguous() for key, value in self.blocks.state_dict().items()}


def load_encoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The `blocks.*` weights a pretrain run saved (safetensors: no code runs on load)."""
    state = safetensors.torch.load_file(str(path))
    if not state or not all(key.startswith("blocks.") for key in state):
        raise ValueError(f"{path} is not a voicewatch pretrain checkpoint (expected blocks.* tensors)")
    return state


def pretrain(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    settings = FeatureSettings()
    architecture = Architecture(tuple(int(c) for c in args.channels.split(",")), args.kernel_size)
    data = build_windows(args.corpus, "train", settings, 1, args.seed).features
    data = centre_each_band(data)  # as the nets it initialises see them by default
    model = ConvAutoencoder(settings.n_mels, architecture)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    log, started = [], time.monotonic()
    for step in range(args.steps):
        batch = data[torch.from_numpy(rng.integers(0, len(data), args.batch))].float()
        loss = F.mse_loss(model(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            log.append({"step": step + 1, "mse": round(float(loss.detach()), 4), "seconds": round(time.monotonic() - started, 1)})
            _LOG.info("%s", log[-1])
    metadata = {"architecture": json.dumps({"channels": list(architecture.channels), "kernel_size": architecture.kernel_size})}
    atomic_write_bytes(Path(args.out), safetensors.torch.save(model.encoder_state(), metadata=metadata))
    result = {"steps": args.steps, "windows": len(data), "final_mse": log[-1]["mse"] if log else None, "log": log}
    Path(str(args.out) + ".log.json").write_text(json.dumps(result, indent=1))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, help="folder made by `python -m voicewatch.training.voices`")
    parser.add_argument("--out", type=Path, required=True, help="encoder weights to write (safetensors)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channels", default="128,128,128", help="Conv1d widths, as for `train`")
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=100)


def run(args: argparse.Namespace) -> int:
    result = pretrain(args)
    print(json.dumps({k: v for k, v in result.items() if k != "log"}))
    return 0
