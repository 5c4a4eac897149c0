"""The corpus' splits stay apart: test voices reach no training run, no validation figure and no cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthetic_voices import VOICES, synthetic_corpus
from voicewatch.features import FeatureSettings
from voicewatch.training.streams import cohort_voices, training_voices, validation_voices, voices_of_split
from voicewatch.training.train import build_windows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_corpus(tmp_path_factory.mktemp("corpus"), {"train": VOICES[:2], "val": VOICES[2:3],
                                                                  "test": VOICES[3:]}, clips=3)


def test_each_split_lists_its_own_voices_only(corpus: Path) -> None:
    assert sorted(training_voices(corpus)) == ["low", "mid"]
    assert sorted(validation_voices(corpus)) == ["high"]
    assert sorted(voices_of_split(corpus, "test")) == ["bright", "deep"]
    assert sorted(cohort_voices(corpus)) == ["low", "mid"]  # impostors for score normalisation: training voices
    assert voices_of_split(corpus, "test", frozenset({"elsewhere"})) == {}


@pytest.mark.parametrize(("split", "voices"), [("train", {"low", "mid"}), ("val", {"high"})])
def test_training_and_validation_windows_never_hold_a_test_voice(corpus: Path, split: str, voices: set[str]) -> None:
    windows = build_windows(corpus, split, FeatureSettings(), copies=1, seed=0)
    assert {name for name in windows.speakers if not name.startswith("~")} == voices
