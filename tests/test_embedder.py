"""The embedder: checkpoints that load without pickle, unit vectors at any rate, batch = one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from voicewatch.embedder import Architecture, CheckpointError, Embedder, EmbedderNet, fuse, serve
from voicewatch.features import FeatureExtractor, FeatureSettings, pick_device


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder.create(Architecture((32, 32), 3, 16))


def test_save_and_load_give_identical_embeddings_and_id(embedder: Embedder, tmp_path: Path) -> None:
    embedder.save(tmp_path / "m.safetensors")
    loaded = Embedder.load(tmp_path / "m.safetensors", device="cpu")
    wave = torch.randn(2, 32000) * 0.1
    assert torch.equal(loaded.embed(wave, 16000), embedder.embed(wave, 16000))
    assert loaded.model_id == embedder.model_id and loaded.net.architecture == Architecture((32, 32), 3, 16)


def test_a_model_carries_the_threshold_chosen_for_it_else_the_notes_0_7(embedder: Embedder, tmp_path: Path) -> None:
    embedder.save(tmp_path / "plain.safetensors")
    assert Embedder.load(tmp_path / "plain.safetensors", device="cpu").threshold == 0.7
    embedder.save(tmp_path / "calibrated.safetensors", extra={"threshold": 0.81})
    assert Embedder.load(tmp_path / "calibrated.safetensors", device="cpu").threshold == 0.81
    embedder.save(tmp_path / "zero.safetensors", extra={"threshold": 0.0})
    assert Embedder.load(tmp_path / "zero.safetensors", device="cpu").threshold == 0.0  # a value, not "missing"
    embedder.save(tmp_path / "bad.safetensors", extra={"threshold": 3.0})
    with pytest.raises(CheckpointError, match="threshold 3.0"):
        Embedder.load(tmp_path / "bad.safetensors", device="cpu")
    state = safetensors.torch.load_file(str(tmp_path / "plain.safetensors"))
    with safetensors.safe_open(str(tmp_path / "plain.safetensors"), "pt") as handle:
        meta = handle.metadata()
    safetensors.torch.save_file(state, str(tmp_path / "odd_info"), metadata={**meta, "info": "[0.8]"})
    with pytest.raises(CheckpointError, match="not describe a valid embedder"):
        Embedder.load(tmp_path / "odd_info", device="cpu")


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_embeddings_are_unit_vectors_at_any_rate(embedder: Embedder, rate: int) -> None:
    vectors = embedder.embed(torch.randn(3, 2 * rate) * 0.1, rate)
    assert vectors.shape == (3, 16)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_embed_gives_its_vectors_back_on_the_input_device_whatever_device_it_runs_on() -> None:
    embedder = Embedder.load(device="auto")  # cuda where there is one
    vectors = embedder.embed(torch.randn(2, 32000) * 0.1, 16000)
    assert vectors.device == torch.device("cpu")
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_cpu_embed_the_same_windows_to_the_same_vectors() -> None:
    waves = torch.randn(4, 96000) * 0.1
    on_cpu = Embedder.load(device="cpu").embed(waves, 48000)
    on_cuda = Embedder.load(device="cuda").embed(waves.cuda(), 48000)
    assert on_cuda.device.type == "cuda"
    assert torch.nn.functional.cosine_similarity(on_cpu, on_cuda.cpu()).min() > 0.9999


def test_a_batch_gives_what_single_windows_give(embedder: Embedder) -> None:
    waves = torch.randn(5, 32000) * 0.1
    batched = embedder.embed(waves, 16000)
    single = torch.cat([embedder.embed(w[None], 16000) for w in waves])
    assert torch.allclose(batched, single, atol=1e-5)


def test_bad_checkpoints_are_refused_with_a_reason(embedder: Embedder, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Embedder.load(tmp_path / "none.safetensors")
    (tmp_path / "junk").write_bytes(b"\x01" * 100)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        Embedder.load(tmp_path / "junk")
    safetensors.torch.save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign"), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match="not a voicewatch embedder"):
        Embedder.load(tmp_path / "foreign")
    embedder.save(tmp_path / "m.safetensors")
    state = safetensors.torch.load_file(str(tmp_path / "m.safetensors"))
    with safetensors.safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:
        meta = handle.metadata()
    safetensors.torch.save_file(state, str(tmp_path / "future"), metadata={**meta, "version": "99"})
    with pytest.raises(CheckpointError, match="version"):
        Embedder.load(tmp_path / "future")
    broken_arch = json.dumps({"channels": [8], "kernel_size": 3, "embedding_dim": 16})
    safetensors.torch.save_file(state, str(tmp_path / "mismatch"), metadata={**meta, "architecture": broken_arch})
    with pytest.raises(CheckpointError, match="not describe a valid embedder"):
        Embedder.load(tmp_path / "mismatch")
    no_members = json.dumps({"channels": [32, 32], "kernel_size": 3, "embedding_dim": 16, "members": 0})
    safetensors.torch.save_file({}, str(tmp_path / "empty"), metadata={**meta, "architecture": no_members})
    with pytest.raises(CheckpointError, match="members is 0"):  # else it would load and fail on its first window
        Embedder.load(tmp_path / "empty")


def test_fused_nets_score_the_mean_of_their_cosines_and_load_as_one_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    kept = Architecture((32, 32), 3, 16, centre_bands=(False,))  # members of both kinds join
    nets = [EmbedderNet(128, architecture).eval() for architecture in (Architecture((32, 32), 3, 16), kept, kept)]
    for net in nets:  # statistics of their own, as trained nets have
        for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    features = torch.randn(5, 128, 98)
    with torch.no_grad():
        apart = [net(features) for net in nets]
        fused = fuse(nets)
        joined = fused(features)
    assert joined.shape == (5, 48) and torch.allclose(joined.norm(dim=1), torch.ones(5))
    mean_cosine = sum(e @ e.T for e in apart) / 3
    assert torch.allclose(joined @ joined.T, mean_cosine, atol=1e-5)
    Embedder(fused, FeatureSettings()).save(tmp_path / "fused.safetensors")
    loaded = Embedder.load(tmp_path / "fused.safetensors", device="cpu")
    assert loaded.dim == 48 and loaded.net.architecture.members == 3
    assert loaded.net.architecture.centre_bands == (True, False, False)
    assert torch.allclose(loaded.embed_features(features), joined, atol=1e-6)
    with pytest.raises(ValueError, match="single nets of one shape"):
        fuse([nets[0], EmbedderNet(128, Architecture((16, 16), 3, 16))])
    with pytest.raises(ValueError, match="single nets of one shape"):
        fuse([fused, nets[0]])


def test_serving_gives_the_nets_embeddings_with_batch_norms_folded_and_activations_channels_last() -> None:
    torch.manual_seed(2)
    nets = [EmbedderNet(128, Architecture((24, 16, 8), kernel, 12, centre_bands=(centre,))).eval()
            for kernel, centre in ((3, True), (5, False), (3, False))]
    nets.append(EmbedderNet(128, Architecture((24, 16, 8), 3, 12, pooling="mean+std")).eval())
    for norm in (m for net in nets for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        for values, low, high in ((norm.running_mean, -1, 1), (norm.running_var, 0.3, 3), (norm.weight, 0.5, 2),
                                  (norm.bias, -0.5, 0.5)):
            values.data.uniform_(low, high)
    features = torch.randn(6, 128, 97) * 3  # an odd number of frames: every pooling drops its last one
    with torch.inference_mode():
        for net in (nets[0], nets[1], fuse([nets[0], nets[2]]), nets[3], fuse([nets[3], nets[3]])):
            assert torch.allclose(serve(net, features), net(features), atol=1e-6)
        assert torch.allclose(serve(nets[0], features[:1]), nets[0](features[:1]), atol=1e-6)


def test_features_are_128_mels_by_frames_less_the_window_mean_and_keep_the_spectrum_shape() -> None:
    noise = torch.randn(2, 44100, generator=torch.Generator().manual_seed(0))
    bright = torch.cat([noise[:, :1], noise[:, 1:] - noise[:, :-1]], dim=1)  # differenced: treble up, bass down
    extractor = FeatureExtractor()
    features, brighter = extractor(noise, 22050), extractor(bright, 22050)
    assert features.shape == (2, 128, FeatureSettings().frames(44100))
    assert torch.allclose(features.mean(dim=(1, 2)), torch.zeros(2), atol=1e-4)
    tilt = (brighter - features).mean(dim=-1)  # per band: the colouring, which the features keep
    assert (tilt[:, -16:].mean(dim=1) - tilt[:, :16].mean(dim=1) > 3).all()


def test_a_band_centring_net_ignores_a_channel_colouring_and_one_that_keeps_band_means_does_not() -> None:
    torch.manual_seed(2)
    features = torch.randn(3, 128, 98)
    coloured = features + torch.linspace(-2, 2, 128)[None, :, None]  # a fixed tilt on every frame
    with torch.no_grad():
        centring = EmbedderNet(128, Architecture((32, 32), 3, 16)).eval()
        keeping = EmbedderNet(128, Architecture((32, 32), 3, 16, centre_bands=(False,))).eval()
        assert torch.allclose(centring(features), centring(coloured), atol=1e-5)
        assert not torch.allclose(keeping(features), keeping(coloured), atol=1e-2)


def test_model_files_from_before_band_centring_was_a_choice_load_as_band_centring(tmp_path: Path) -> None:
    embedder = Embedder.create(Architecture((32, 32), 3, 16))
    embedder.save(tmp_path / "model")
    meta = safetensors.safe_open(str(tmp_path / "model"), framework="pt").metadata()
    state = safetensors.torch.load_file(str(tmp_path / "model"))
    old = json.dumps({"channels": [32, 32], "kernel_size": 3, "embedding_dim": 16, "members": 1})
    safetensors.torch.save_file(state, str(tmp_path / "old"), metadata={**meta, "architecture": old})
    assert Embedder.load(tmp_path / "old", device="cpu").net.architecture.centre_bands == (True,)
    assert Architecture((32, 32), 3, 16, members=3).centre_bands == (True, True, True)  # left empty: all centre
    for wrong in ([True, False], [], "yes", [1]):
        bad = json.dumps({"channels": [32, 32], "kernel_size": 3, "embedding_dim": 16, "centre_bands": wrong})
        safetensors.torch.save_file(state, str(tmp_path / "bad"), metadata={**meta, "architecture": bad})
        with pytest.raises(CheckpointError, match="centre_bands"):
            Embedder.load(tmp_path / "bad")


def test_a_gain_change_does_not_change_the_features() -> None:
    # a fixed draw, loud enough that no band of either copy nears the log floor (at 0.1, one draw in eight
    # has a narrow low band that quiet in some frame)
    wave = torch.randn(1, 44100, generator=torch.Generator().manual_seed(0)) * 0.5
    extractor = FeatureExtractor()
    assert torch.allclose(extractor(wave, 22050), extractor(wave * 0.25, 22050), atol=1e-2)


def test_device_auto_picks_cuda_only_when_present() -> None:
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_a_statistics_pooling_net_round_trips_through_a_model_file_and_unknown_poolings_are_refused(
        tmp_path: Path) -> None:
    torch.manual_seed(3)
    statistics = Embedder.create(Architecture((32,), 3, 16, pooling="mean+std"))
    statistics.save(tmp_path / "model")
    loaded = Embedder.load(tmp_path / "model", device="cpu")
    features = torch.randn(2, 128, 98)
    assert loaded.net.architecture.pooling == "mean+std" and loaded.net.project.in_features == 64
    assert torch.equal(loaded.embed_features(features), statistics.embed_features(features))
    with pytest.raises(ValueError, match="pooling"):
        Architecture((32,), 3, 16, pooling="max")
