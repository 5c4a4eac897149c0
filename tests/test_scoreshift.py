"""The score shift: a window is raised by what its condition costs, fitted on training trials, carried in the
model file, added by the pipeline and by the eval's trials."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Architecture, CheckpointError, Embedder
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.scoreshift import ScoreShift, band_statistics
from voicewatch.sourceframes import file_frames
from voicewatch.training.calibrate import ConditionTrials, fit_shift
from voicewatch.training.errorrates import eer_threshold
from voicewatch.training.trials import condition_scores

N_MELS = 8


def sure_of(condition: int, offsets: list[float], n_mels: int = N_MELS) -> ScoreShift:
    """A shift whose classifier names `condition` for every window."""
    shift = ScoreShift(n_mels, tuple(f"c{i}" for i in range(len(offsets))))
    with torch.no_grad():
        shift.classify.weight.zero_()
        shift.classify.bias.copy_(torch.tensor([30.0 if i == condition else 0.0 for i in range(len(offsets))]))
        shift.offsets.copy_(torch.tensor(offsets))
    return shift.eval()


def clean_like(count: int, rng: np.random.Generator) -> torch.Tensor:
    """Features whose bands rise and fall (speech)."""
    return torch.from_numpy(rng.normal(0.0, 1.0, (count, N_MELS, 50)).astype(np.float32))


def bed_like(count: int, rng: np.random.Generator) -> torch.Tensor:
    """Features held up by a steady bed in the upper bands."""
    features = rng.normal(0.0, 0.3, (count, N_MELS, 50))
    features[:, N_MELS // 2:] += 2.0
    return torch.from_numpy(features.astype(np.float32))


def test_band_statistics_are_each_bands_mean_then_its_spread() -> None:
    features = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])
    assert torch.allclose(band_statistics(features), torch.tensor([[2.0, 2.0, 2 ** 0.5, 0.0]]))
    log_mel = torch.randn(4, 128, 98) * 3.0 - 5.0  # the spread of real features, far from zero
    expected = torch.cat([log_mel.mean(-1), log_mel.std(-1)], dim=1)
    assert torch.allclose(band_statistics(log_mel), expected, atol=1e-5)


def test_a_window_is_raised_by_its_conditions_offset_and_an_undecided_one_by_the_mean_offset() -> None:
    features = clean_like(3, np.random.default_rng(0))
    assert torch.allclose(sure_of(1, [0.0, 0.04, 0.01])(features), torch.full((3,), 0.04))
    assert torch.allclose(sure_of(0, [0.0, 0.04, 0.01])(features), torch.zeros(3), atol=1e-6)
    undecided = sure_of(0, [0.0, 0.04, 0.01])
    with torch.no_grad():
        undecided.classify.bias.zero_()
    assert torch.allclose(undecided(features), torch.full((3,), 0.05 / 3))


def test_a_shift_needs_two_distinct_conditions() -> None:
    for conditions in (("clean",), ("clean", "clean")):
        with pytest.raises(ValueError, match="two or more distinct conditions"):
            ScoreShift(N_MELS, conditions)


def test_the_fit_offsets_each_condition_by_where_its_errors_balance_and_tells_the_conditions_apart() -> None:
    rng = np.random.default_rng(1)
    clean, bed = clean_like(200, rng), bed_like(200, rng)
    trials = {
        "clean": ConditionTrials(band_statistics(clean), rng.normal(0.85, 0.05, 200), rng.normal(0.55, 0.05, 2000)),
        "music": ConditionTrials(band_statistics(bed), rng.normal(0.75, 0.05, 200), rng.normal(0.50, 0.05, 2000)),
    }
    shift, accuracy = fit_shift(trials, N_MELS)
    expected = eer_threshold(trials["clean"].target, trials["clean"].impostor) - eer_threshold(
        trials["music"].target, trials["music"].impostor)
    assert 0.05 < expected < 0.10
    assert shift.conditions == ("clean", "music") and accuracy == 1.0
    assert torch.allclose(shift.offsets, torch.tensor([0.0, expected]))
    new = np.random.default_rng(2)  # windows the fit has not seen
    assert shift(clean_like(20, new)).abs().max() < 0.01 * expected
    assert torch.allclose(shift(bed_like(20, new)), torch.full((20,), expected), rtol=0.01)


@pytest.fixture(scope="module")
def small() -> Embedder:
    torch.manual_seed(0)
    return Embedder.create(Architecture((32, 32), 3, 16))


def test_a_model_carries_its_shift_and_a_shift_makes_it_another_model(small: Embedder, tmp_path: Path) -> None:
    small.save(tmp_path / "plain")
    plain = Embedder.load(tmp_path / "plain", device="cpu")
    assert plain.shift is None and torch.equal(plain.score_shift(torch.zeros(2, 128, 10)), torch.zeros(2))
    shifted = Embedder(small.net, small.settings, shift=sure_of(1, [0.0, 0.03], n_mels=128))
    shifted.save(tmp_path / "shifted")
    loaded = Embedder.load(tmp_path / "shifted", device="cpu")
    assert loaded.shift.conditions == ("c0", "c1")
    features = torch.randn(4, 128, 10)
    assert torch.allclose(loaded.score_shift(features), torch.full((4,), 0.03))
    assert loaded.model_id == shifted.model_id != plain.model_id  # a bank enrolled for one is refused by the other
    wave = torch.randn(2, 32000) * 0.1
    assert torch.equal(loaded.embed(wave, 16000), plain.embed(wave, 16000))  # the embeddings are the net's alone


def test_a_malformed_shift_in_a_model_file_is_refused_with_a_reason(small: Embedder, tmp_path: Path) -> None:
    Embedder(small.net, small.settings, shift=sure_of(1, [0.0, 0.03], n_mels=128)).save(tmp_path / "m")
    state = safetensors.torch.load_file(str(tmp_path / "m"))
    with safetensors.safe_open(str(tmp_path / "m"), "pt") as handle:
        meta = handle.metadata()
    cases = [  # (tensors, metadata, what the refusal names)
        (state, {k: v for k, v in meta.items() if k != "score_shift"}, "score_shift"),
        (state, {**meta, "score_shift": json.dumps({"conditions": "c0,c1"})}, "list of names"),
        (state, {**meta, "score_shift": json.dumps({"conditions": ["c0"]})}, "two or more"),
        ({k: v for k, v in state.items() if k != "score_shift.offsets"}, meta, "offsets"),
        ({**state, "score_shift.offsets": torch.tensor([0.0, float("nan")])}, meta, "not finite"),
        ({**state, "score_shift.centre": torch.zeros(3)}, meta, "centre"),
    ]
    for tensors, metadata, reason in cases:
        safetensors.torch.save_file(tensors, str(tmp_path / "bad"), metadata=metadata)
        with pytest.raises(CheckpointError, match=reason):
            Embedder.load(tmp_path / "bad")


def test_the_pipeline_adds_each_windows_shift_to_all_its_scores() -> None:
    from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING

    shipped = Embedder.load(device="cpu")
    bank = SpeakerBank.load(DEMO_BANK, embedder_id=shipped.model_id)
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    items = [item for frame in file_frames(DEMO_RECORDING, "demo", 0.1) for item in ingest.accept(frame)][:400]
    unshifted = Embedder(shipped.net, shipped.settings)
    plain, _ = Pipeline(unshifted, bank, config.detector, config.windows.hop_s).score(items)
    raised = Embedder(shipped.net, shipped.settings, shift=sure_of(1, [0.0, 0.05], n_mels=128))
    shifted, _ = Pipeline(raised, bank, config.detector, config.windows.hop_s).score(items)
    assert plain.shape == shifted.shape and len(plain) > 10
    assert np.allclose(shifted - plain, 0.05, atol=1e-6)


def test_the_evals_trials_add_each_windows_shift() -> None:
    rng = np.random.default_rng(3)
    tests = {name: rng.normal(0, 0.1, (6, 400)).astype(np.float32) for name in ("a", "b")}
    embed = lambda windows: torch.nn.functional.normalize(torch.from_numpy(windows[:, :16].copy()), dim=1)  # noqa: E731
    bank = SpeakerBank("eval", 16)
    for name in ("a", "b"):
        bank.enroll(name, embed(tests[name]))
    plain = condition_scores(embed, bank, tests, "clean", 0)
    shifted = condition_scores(embed, bank, tests, "clean", 0, shift=lambda windows: torch.from_numpy(windows[:, 0] * 0 + 0.1))
    assert np.allclose(shifted.scores - plain.scores, 0.1, atol=1e-6)


def test_calibrate_fits_a_shift_on_training_voices_and_fixes_the_threshold_with_it(tmp_path: Path) -> None:
    from daemon_harness import run_cli
    from synthetic_voices import VOICES, synthetic_corpus

    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4)
    net, calibrated = tmp_path / "net.safetensors", tmp_path / "calibrated.safetensors"
    trained = run_cli("train", "--corpus", str(corpus), "--out", str(net), "--channels", "16,16", "--steps", "2",
                      "--batch-speakers", "3", "--batch-per-speaker", "2", "--copies", "1", "--no-mine-outside",
                      "--eval-every", "2", "--threads", "1", timeout=600)
    assert trained.returncode == 0, trained.stderr
    result = run_cli("calibrate", str(net), "--corpus", str(corpus), "--out", str(calibrated), timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    shift = info["score_shift"]
    assert shift["conditions"] == ["clean", "music", "noise", "phone", "mp2"] and shift["offsets"][0] == 0.0
    assert shift["training_voices"] == 3 and 0.0 <= shift["classifier_accuracy"] <= 1.0
    assert shift["unshifted_threshold"] == json.loads(trained.stdout)["threshold"]  # same windows, same rate
    model = Embedder.load(calibrated, device="cpu")
    assert model.threshold == info["threshold"] and model.shift is not None
    assert torch.allclose(model.shift.offsets, torch.tensor(shift["offsets"]), atol=1e-4)
    again = run_cli("calibrate", str(calibrated), "--corpus", str(corpus), "--out", str(tmp_path / "again"), timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout)["score_shift"] == shift  # fitted afresh from the net
    fused = run_cli("fuse", "--corpus", str(corpus), "--out", str(tmp_path / "f"), str(net), str(calibrated))
    assert fused.returncode == 2 and "carries a score shift" in fused.stderr and "Traceback" not in fused.stderr


def test_calibrate_refuses_bad_settings_and_corpora_without_writing(tmp_path: Path) -> None:
    from daemon_harness import run_cli
    from synthetic_voices import VOICES, synthetic_corpus
    from voicewatch.shipped import DEFAULT_MODEL

    lonely = synthetic_corpus(tmp_path / "lonely", {"train": VOICES[:1], "val": VOICES[3:]}, clips=4)
    out, shipped = tmp_path / "out.safetensors", str(DEFAULT_MODEL)
    for args, message in (
        ((str(lonely / "none.safetensors"), "--corpus", str(lonely), "--out", str(out)), "does not exist"),
        ((shipped, "--corpus", str(lonely), "--out", str(out), "--threshold-false-alarm", "2"), "--threshold-false-alarm"),
        ((shipped, "--corpus", str(lonely), "--out", str(out)), "fewer than two recorded training voices"),
        ((shipped, "--corpus", str(lonely), "--out", str(tmp_path / "gone" / "out.safetensors")), "folder"),
    ):
        refused = run_cli("calibrate", *args, timeout=300)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert not out.exists() and not (tmp_path / "gone").exists()


def test_the_threshold_is_fixed_on_shifted_validation_scores(small: Embedder) -> None:
    from voicewatch.training.data import Windows
    from voicewatch.training.train import validation_threshold

    torch.manual_seed(1)
    val = Windows(torch.randn(60, 128, 20), torch.arange(6).repeat_interleave(10), [f"v{i}" for i in range(6)])
    raised = sure_of(1, [0.0, 0.1], n_mels=128)
    unshifted = validation_threshold(small.net, val, 0.05)
    assert validation_threshold(small.net, val, 0.05, raised) == pytest.approx(unshifted + 0.1, abs=1e-5)
