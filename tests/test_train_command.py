"""`voicewatch pretrain` then `voicewatch train --init --memory --classify-weight`, then a smaller student distilled from
an ensemble of that model and itself (`--teacher A,B`), and `voicewatch fuse`: the whole training path runs on a
tiny corpus and writes models the product loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from daemon_harness import run_cli
from synthetic_voices import VOICES, synthetic_corpus
from voicewatch.embedder import Embedder
from voicewatch.features import FeatureSettings


def test_pretrained_blocks_and_the_memory_train_a_loadable_model(tmp_path: Path) -> None:
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4)
    encoder = tmp_path / "ae.safetensors"
    pre = run_cli("pretrain", "--corpus", str(corpus), "--out", str(encoder), "--steps", "3", "--batch", "8",
                  "--channels", "32,32", "--log-every", "1", "--threads", "1", timeout=600)
    assert pre.returncode == 0, pre.stderr
    assert json.loads(pre.stdout)["steps"] == 3 and encoder.exists()
    model = tmp_path / "model.safetensors"
    trained = run_cli("train", "--corpus", str(corpus), "--out", str(model), "--init", str(encoder), "--memory", "64",
                      "--classify-weight", "0.2",
                      "--channels", "32,32", "--steps", "4", "--batch-speakers", "3", "--batch-per-speaker", "2",
                      "--copies", "1", "--pool", "32", "--pool-every", "2", "--eval-every", "2", "--threads", "1",
                      timeout=600)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["memory"] == 64 and result["init"] == str(encoder) and 0.0 <= result["val_eer"] <= 1.0
    assert result["classify_weight"] == 0.2
    assert "conv blocks initialised from" in trained.stderr
    loaded = Embedder.load(model, device="cpu")
    assert loaded.net.architecture.channels == (32, 32)
    assert loaded.threshold == result["threshold"] and result["threshold_false_alarm"] == 0.05  # fixed from validation
    student = tmp_path / "student.safetensors"
    ensemble = f"{model},{model}"
    distil = ("train", "--corpus", str(corpus), "--out", str(student), "--teacher", ensemble, "--channels", "16,16",
              "--embedding-dim", "8", "--steps", "2", "--batch-speakers", "3", "--batch-per-speaker", "2",
              "--copies", "2", "--pool", "32", "--eval-every", "2", "--threads", "1",
              "--window-cache", str(tmp_path / "windows"))
    distilled = run_cli(*distil, timeout=600)
    assert distilled.returncode == 0, distilled.stderr
    assert json.loads(distilled.stdout)["teacher"] == ensemble and json.loads(distilled.stdout)["distill_loss"] == "embedding"
    assert Embedder.load(student, device="cpu").dim == 8  # the teacher's head is not part of the student
    assert len(list((tmp_path / "windows").glob("*.pt"))) == 2  # training and validation windows
    again = run_cli(*distil, timeout=600)
    assert again.returncode == 0 and again.stderr.count("windows from") == 2, again.stderr
    usual = run_cli(*distil, "--music-share", "0.3", timeout=600)  # the default, spelled out: the same windows
    assert usual.returncode == 0 and usual.stderr.count("windows from") == 2, usual.stderr
    more_music = run_cli(*distil, "--music-share", "0.5", timeout=600)  # other training windows, the same validation
    assert more_music.returncode == 0 and more_music.stderr.count("windows from") == 1, more_music.stderr
    assert len(list((tmp_path / "windows").glob("*.pt"))) == 3 and json.loads(more_music.stdout)["music_share"] == 0.5
    fused = tmp_path / "fused.safetensors"
    joined = run_cli("fuse", "--corpus", str(corpus), "--out", str(fused), str(model), str(model), timeout=600)
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["threshold"] == result["threshold"]  # two copies of a net score as that net does
    assert Embedder.load(fused, device="cpu").dim == 2 * loaded.dim
    other_features = tmp_path / "other-features.safetensors"
    Embedder.create(loaded.net.architecture, FeatureSettings(hop_length=220)).save(other_features)
    for options, message in (([model], "two or more model files"), ([model, student], "single nets of one shape"),
                             ([model, other_features], "trained on the same features"),
                             ([model, tmp_path / "missing.safetensors"], "does not exist"),
                             ([model, model, "--threshold-false-alarm", "0"], "--threshold-false-alarm must be between")):
        refused = run_cli("fuse", "--corpus", str(corpus), "--out", str(tmp_path / "f.safetensors"), *map(str, options),
                          timeout=600)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "f.safetensors").exists()
    resumed = run_cli("train", "--corpus", str(corpus), "--out", str(student), "--resume", "--channels", "16,16",
                      "--embedding-dim", "8", "--steps", "3", "--threads", "1", timeout=600)  # no --teacher this time
    assert resumed.returncode == 2 and "was trained with another --teacher or --classify-weight setting" in resumed.stderr
    no_teacher = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "y.safetensors"), "--teacher",
                         str(tmp_path / "missing.safetensors"), "--steps", "1", "--threads", "1", timeout=600)
    assert no_teacher.returncode == 2 and "neither 'resemblyzer' nor a model file" in no_teacher.stderr
    no_corpus = run_cli("train", "--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n.safetensors"),
                        timeout=600)
    assert no_corpus.returncode == 2 and "not a corpus folder, no manifest.json" in no_corpus.stderr
    lone_loss = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "l.safetensors"), "--distill-loss",
                        "similarity", timeout=600)
    assert lone_loss.returncode == 2 and "--distill-loss similarity needs a --teacher" in lone_loss.stderr
    bad_rate = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "z.safetensors"),
                       "--threshold-false-alarm", "1.5", timeout=600)
    assert bad_rate.returncode == 2 and "--threshold-false-alarm must be between 0 and 1" in bad_rate.stderr
    for option, value in (("--classify-weight", "-1"), ("--classify-weight", "nan"), ("--distill-weight", "inf")):
        bad_weight = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "w.safetensors"), option, value,
                             timeout=600)
        assert bad_weight.returncode == 2 and f"{option} must be 0 or more" in bad_weight.stderr, (option, value)
    for options, message in ((("--speeds", "0.9,1.0"), "--speeds must start with 1.0"),
                             (("--paired-copies", "--copies", "1"), "--paired-copies needs --copies 2 or more"),
                             (("--paired-copies", "--batch-per-speaker", "5"), "an even --batch-per-speaker"),
                             (("--music-share", "0.9"), "--music-share must be from 0 to 0.75"),
                             (("--music-share", "nan"), "--music-share must be from 0 to 0.75"),
                             (("--init", str(encoder), "--keep-band-means", "--channels", "32,32"),
                              "--init with --keep-band-means")):
        refused = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "p.safetensors"), *options,
                          "--steps", "1", "--threads", "1", timeout=600)  # without the check: a quick run, exit 0
        assert refused.returncode == 2 and message in refused.stderr, (options, refused.stderr)
    assert not (tmp_path / "p.safetensors").exists()
    wrong = run_cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "x.safetensors"), "--init", str(encoder),
                    "--steps", "1", "--threads", "1", timeout=600)
    assert wrong.returncode == 2 and "does not fit --channels 128,128,128" in wrong.stderr


def test_the_shipped_recipe_trains_with_resemblyzer_as_teacher_into_a_model_that_runs_without_it(tmp_path: Path) -> None:
    """The recipe of the shipped model (docs/training.md), on a tiny corpus; needs the optional peer extra."""
    pytest.importorskip("resemblyzer", reason="the optional peer extra (the training-time teacher) is not installed")
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4)
    recipe = ("--teacher", "resemblyzer", "--distill-loss", "similarity", "--distill-weight", "50", "--classify-weight",
              "0.2", "--no-mine-outside", "--paired-copies", "--channels", "16,16", "--steps", "3", "--batch-speakers",
              "3", "--batch-per-speaker", "2", "--copies", "2", "--eval-every", "3", "--threads", "1")
    centring, keeping, model = (tmp_path / f"{name}.safetensors" for name in ("centring", "keeping", "model"))
    trained = run_cli("train", "--corpus", str(corpus), "--out", str(centring), *recipe, timeout=600)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert (result["teacher"], result["distill_loss"], result["classify_weight"]) == ("resemblyzer", "similarity", 0.2)
    assert result["paired_copies"] and result["speeds"] == [1.0, 0.88, 1.12]
    assert result["architecture"]["centre_bands"] == [True]
    kept = run_cli("train", "--corpus", str(corpus), "--out", str(keeping), *recipe, "--keep-band-means", timeout=600)
    assert kept.returncode == 0 and json.loads(kept.stdout)["architecture"]["centre_bands"] == [False], kept.stderr
    fused = run_cli("fuse", "--corpus", str(corpus), "--out", str(model), str(centring), str(centring), str(keeping))
    assert fused.returncode == 0, fused.stderr
    code = ("import sys; sys.modules['resemblyzer'] = None; from voicewatch.embedder import Embedder; "
            f"net = Embedder.load({str(model)!r}, device='cpu').net; print(net.architecture.dim, "
            "*net.architecture.centre_bands)")
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr  # the teacher is not needed to run it
    assert alone.stdout.split() == ["192", "True", "True", "False"]


def test_a_fold_holds_its_sources_out_of_training_and_validation_from_the_same_window_cache(tmp_path: Path) -> None:
    sources = {"low": "a-data", "mid": "b-data", "high": "b-data", "deep": "c-data", "bright": "c-data"}
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:2], "val": VOICES[2:]}, clips=4, sources=sources)
    small = ("--corpus", str(corpus), "--channels", "16,16", "--steps", "2", "--batch-speakers", "3",
             "--batch-per-speaker", "2", "--copies", "2", "--eval-every", "2", "--threads", "1", "--speeds", "1.0",
             "--window-cache", str(tmp_path / "windows"))
    whole = run_cli("train", *small, "--out", str(tmp_path / "whole.safetensors"), timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["held_out"] == [] and json.loads(whole.stdout)["val_speakers"] == 3
    fold = tmp_path / "fold.safetensors"
    held = run_cli("train", *small, "--out", str(fold), "--hold-out", "b-data", timeout=600)
    assert held.returncode == 0, held.stderr
    result = json.loads(held.stdout)
    assert result["held_out"] == ["b-data"] and result["val_speakers"] == 2  # high (validation) left out
    assert result["train_speakers"] == 1 + 3  # low and the three non-speech classes: mid left out
    assert held.stderr.count("windows from") == 2  # the windows the whole run prepared
    assert len(list((tmp_path / "windows").glob("*.pt"))) == 2
    with safe_open(str(fold), "pt") as model:
        assert json.loads(model.metadata()["info"])["held_out"] == ["b-data"]
    for option, message in (("nowhere-data", "no voice of"), ("b-data,b-data", "each once"),
                            ("c-data", "leaves fewer than two validation voices")):
        refused = run_cli("train", *small, "--out", str(tmp_path / "r.safetensors"), "--hold-out", option, timeout=600)
        assert refused.returncode == 2 and message in refused.stderr, (option, refused.stderr)
    assert not (tmp_path / "r.safetensors").exists()
