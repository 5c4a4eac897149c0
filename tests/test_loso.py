"""`voicewatch loso`: each fold model is scored on the voices of the sources it held out, with a peer on the same
trials, per fold and pooled; a model that held nothing out is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon_harness import run_cli
from synthetic_voices import VOICES, synthetic_corpus
from voicewatch.embedder import Architecture, Embedder

SOURCES = {"low": "a-data", "mid": "a-data", "high": "b-data", "deep": "b-data", "bright": "b-data"}


def fold_model(path: Path, held_out: list[str]) -> Path:
    Embedder.create(Architecture((16, 16))).save(path, extra={"threshold": 0.6, "held_out": held_out})
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loso")
    return synthetic_corpus(folder / "corpus", {"train": VOICES[:2], "val": VOICES[2:]}, clips=4, sources=SOURCES)


def test_each_fold_is_scored_on_its_held_out_voices_of_every_split_and_the_trials_pool(corpus: Path,
                                                                                       tmp_path: Path) -> None:
    folds = [fold_model(tmp_path / "without-a.safetensors", ["a-data"]),
             fold_model(tmp_path / "without-b.safetensors", ["b-data"])]
    out, table = tmp_path / "loso.json", tmp_path / "loso.md"
    done = run_cli("loso", *map(str, folds), "--corpus", str(corpus), "--conditions", "clean,mp2", "--out", str(out),
                   "--markdown", str(table), timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert [fold["held_out"] for fold in results["folds"]] == [["a-data"], ["b-data"]]
    assert [fold["voices"] for fold in results["folds"]] == [["low", "mid"], ["bright", "deep", "high"]]  # train and val
    assert [fold["streams"] for fold in results["folds"]] == [2 * 2, 3 * 2]  # one per voice and condition
    for fold in results["folds"]:
        model = fold["scores"]["model"]
        voices = len(fold["voices"])
        assert model["trials"][1] == model["trials"][0] * (voices - 1)  # each test window against every other voice
        assert model["threshold"] == 0.6 and 0 <= model["eer"] <= 1 and 0 <= model["streams"]["f1"] <= 1
    pooled = results["pooled"]["model"]
    assert pooled["trials"] == [sum(f["scores"]["model"]["trials"][side] for f in results["folds"]) for side in (0, 1)]
    assert "threshold" not in pooled and "false_alarms_per_hour" in pooled["streams"]
    lines = table.read_text().splitlines()
    assert len(lines) == 2 + 2 + 1 and lines[2].startswith("| a-data | 2 |") and lines[-1].startswith("| **pooled** | 5 |")
    again = run_cli("loso", "--table", str(out))
    assert again.returncode == 0 and again.stdout == table.read_text()


def test_a_peer_is_scored_on_exactly_the_same_trials_and_streams(corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("resemblyzer", reason="the optional peer extra is not installed")
    fold = fold_model(tmp_path / "without-a.safetensors", ["a-data"])
    done = run_cli("loso", str(fold), "--corpus", str(corpus), "--conditions", "noise", "--peer", "resemblyzer",
                   timeout=600)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)["folds"][0]["scores"]
    assert set(scores) == {"model", "resemblyzer"} and scores["model"]["trials"] == scores["resemblyzer"]["trials"]
    assert scores["resemblyzer"]["false_alarm"] == pytest.approx(scores["model"]["false_alarm"], abs=0.05)


def test_models_that_are_not_folds_or_name_unknown_sources_are_refused(corpus: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.safetensors"
    Embedder.create(Architecture((16, 16))).save(whole, extra={"threshold": 0.6})
    for model, message in ((whole, "not a fold model"),
                           (fold_model(tmp_path / "other.safetensors", ["c-data"]), "no voice of"),
                           (tmp_path / "missing.safetensors", "missing.safetensors")):
        refused = run_cli("loso", str(model), "--corpus", str(corpus))
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    nothing = run_cli("loso", "--corpus", str(corpus))
    assert nothing.returncode == 2 and "one or more FOLD_MODEL" in nothing.stderr


def test_folds_of_the_same_held_out_sources_fuse_into_a_fold_and_others_are_refused(corpus: Path, tmp_path: Path) -> None:
    one, two = (fold_model(tmp_path / f"{name}.safetensors", ["a-data"]) for name in ("one", "two"))
    fused = tmp_path / "fused.safetensors"
    done = run_cli("fuse", str(one), str(two), "--corpus", str(corpus), "--out", str(fused), timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["held_out"] == ["a-data"]  # its threshold fixed without a-data's voices
    scored = run_cli("loso", str(fused), "--corpus", str(corpus), "--conditions", "clean", timeout=600)
    assert scored.returncode == 0 and json.loads(scored.stdout)["folds"][0]["held_out"] == ["a-data"], scored.stderr
    other = fold_model(tmp_path / "other.safetensors", ["b-data"])
    refused = run_cli("fuse", str(one), str(other), "--corpus", str(corpus), "--out", str(tmp_path / "x.safetensors"))
    assert refused.returncode == 2 and "held out the same sources" in refused.stderr, refused.stderr


def test_a_calibrated_fold_meets_no_voice_of_its_held_out_sources(tmp_path: Path) -> None:
    sources = {"low": "a-data", "mid": "b-data", "high": "b-data", "deep": "b-data", "bright": "b-data"}
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4, sources=sources)
    fold, calibrated = fold_model(tmp_path / "fold.safetensors", ["a-data"]), tmp_path / "calibrated.safetensors"
    done = run_cli("calibrate", str(fold), "--corpus", str(corpus), "--out", str(calibrated), timeout=600)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["score_shift"]["training_voices"] == 2  # low (a-data) fits nothing
    assert info["held_out"] == ["a-data"]  # still a fold for voicewatch loso
    lonely = fold_model(tmp_path / "lonely.safetensors", ["b-data"])  # leaves low alone
    refused = run_cli("calibrate", str(lonely), "--corpus", str(corpus), "--out", str(tmp_path / "x.safetensors"))
    assert refused.returncode == 2 and "once the voices of b-data" in refused.stderr, refused.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_a_model_whose_held_out_is_not_a_list_of_source_names_is_refused(corpus: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd.safetensors"
    Embedder.create(Architecture((16, 16))).save(odd, extra={"threshold": 0.6, "held_out": "a-data"})
    refused = run_cli("loso", str(odd), "--corpus", str(corpus), "--conditions", "clean")
    assert refused.returncode == 2 and "not a list of source names" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
