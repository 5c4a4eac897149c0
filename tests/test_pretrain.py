"""The conv autoencoder of the notes: pooling indices carry the way back, it learns to reconstruct,
and its encoder is the embedder's conv blocks, weight for weight."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from voicewatch.embedder import Architecture, EmbedderNet
from voicewatch.training.pretrain import ConvAutoencoder, load_encoder


def test_unpooling_with_the_indices_gives_back_the_input_shape_for_any_length() -> None:
    model = ConvAutoencoder(128, Architecture((32, 32, 32)))
    for frames in (98, 97, 50, 8):
        assert model(torch.randn(2, 128, frames)).shape == (2, 128, frames)


def test_a_few_steps_lower_the_reconstruction_error() -> None:
    torch.manual_seed(0)
    model = ConvAutoencoder(128, Architecture((32, 32)))
    smooth = F.avg_pool1d(torch.randn(16, 128, 104), 7, stride=1)  # structured in time, like log-MEL
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = F.mse_loss(model(smooth), smooth)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_the_saved_encoder_loads_into_the_embedder_net(tmp_path: Path) -> None:
    architecture = Architecture((32, 48))
    model = ConvAutoencoder(128, architecture)
    path = tmp_path / "ae.safetensors"
    safetensors.torch.save_file(model.encoder_state(), str(path))
    net = EmbedderNet(128, architecture)
    missing, unexpected = net.load_state_dict(load_encoder(path), strict=False)
    assert unexpected == [] and all(key.startswith("project.") for key in missing)
    assert torch.equal(net.blocks[1][0].weight, model.blocks[1][0].weight)
    with pytest.raises(RuntimeError):
        EmbedderNet(128, Architecture((64, 48))).load_state_dict(load_encoder(path), strict=False)


def test_a_file_of_other_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a voicewatch pretrain checkpoint"):
        load_encoder(path)
