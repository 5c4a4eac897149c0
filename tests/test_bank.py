"""SpeakerBank: top-5 mean cosine in one product, per-speaker thresholds, safe and atomic files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from voicewatch.bank import BankError, SpeakerBank, UnknownSpeakerError


def vectors(count: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def naive_score(query: torch.Tensor, exemplars: torch.Tensor, k: int = 5) -> float:
    sims = sorted((float(query @ e) for e in exemplars), reverse=True)
    return sum(sims[:k]) / len(sims[:k])


def test_score_is_the_mean_of_the_top5_cosines_per_speaker_with_fewer_exemplars_the_mean_of_all() -> None:
    bank = SpeakerBank("m", 16)
    sizes = {"one": 1, "three": 3, "five": 5, "twelve": 12}
    for seed, (name, size) in enumerate(sizes.items()):
        bank.enroll(name, vectors(size, seed=seed + 1))
    queries = vectors(7, seed=99)
    scores = bank.score(queries)
    assert scores.shape == (7, 4)
    for row, query in enumerate(queries):
        for column, name in enumerate(bank.names):
            assert scores[row, column].item() == pytest.approx(naive_score(query, bank.exemplars(name)), abs=1e-6)


def test_an_empty_bank_scores_nothing() -> None:
    assert SpeakerBank("m", 16).score(vectors(3)).shape == (3, 0)


def test_thresholds_default_per_speaker_and_refuse_nonsense() -> None:
    bank = SpeakerBank("m", 16, default_threshold=0.7)
    bank.enroll("a", vectors(2))
    bank.enroll("b", vectors(2, seed=1), threshold=0.8)
    assert bank.thresholds().tolist() == pytest.approx([0.7, 0.8])
    with pytest.raises(ValueError):
        bank.set_threshold("a", 1.5)
    with pytest.raises(UnknownSpeakerError, match="zoe"):
        bank.set_threshold("zoe", 0.5)


def test_enroll_adds_to_a_speaker_and_remove_forgets_it() -> None:
    bank = SpeakerBank("m", 16)
    bank.enroll("a", vectors(2))
    bank.enroll("a", vectors(3, seed=1))
    assert len(bank.exemplars("a")) == 5
    bank.remove("a")
    assert bank.names == []
    with pytest.raises(UnknownSpeakerError):
        bank.remove("a")


@pytest.mark.parametrize("name", ["al.ice", "", "a b", "x" * 65, "ä", "alice\n", "x" * 64 + "\n"])
def test_names_that_would_break_topics_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        SpeakerBank("m", 16).enroll(name, vectors(1))


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[N, 16\]"):
        SpeakerBank("m", 16).enroll("a", vectors(2, dim=8))


def test_save_and_load_round_trip_exactly_and_leave_no_temp_files(tmp_path: Path) -> None:
    bank = SpeakerBank("model-1", 16, default_threshold=0.65)
    bank.enroll("a", vectors(3))
    bank.enroll("b", vectors(7, seed=2), threshold=0.8)
    path = tmp_path / "bank.safetensors"
    bank.save(path)
    loaded = SpeakerBank.load(path, embedder_id="model-1")
    assert loaded.names == ["a", "b"] and loaded.default_threshold == 0.65
    assert torch.equal(loaded.exemplars("b"), bank.exemplars("b"))
    assert loaded.thresholds().tolist() == pytest.approx([0.65, 0.8])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.safetensors"]


def test_a_bank_from_another_embedder_is_refused_with_the_way_out(tmp_path: Path) -> None:
    bank = SpeakerBank("model-1", 16)
    bank.enroll("a", vectors(1))
    bank.save(tmp_path / "b.safetensors")
    with pytest.raises(BankError, match="re-enroll"):
        SpeakerBank.load(tmp_path / "b.safetensors", embedder_id="model-2")


def test_missing_corrupt_and_foreign_files_are_bank_errors(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="does not exist"):
        SpeakerBank.load(tmp_path / "none.safetensors")
    (tmp_path / "junk").write_bytes(b"\x00" * 64)
    with pytest.raises(BankError, match="not a readable bank"):
        SpeakerBank.load(tmp_path / "junk")
    import safetensors.torch

    safetensors.torch.save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BankError):
        SpeakerBank.load(tmp_path / "other.safetensors")


def test_copies_are_independent() -> None:
    bank = SpeakerBank("m", 16)
    bank.enroll("a", vectors(2))
    twin = bank.copy()
    twin.remove("a")
    assert bank.names == ["a"]


def test_the_same_bank_always_saves_to_the_same_bytes(tmp_path: Path) -> None:
    bank = SpeakerBank("e1", 4, 0.6)
    bank.enroll("a", vectors(3, 4))
    bank.set_threshold("a", 0.8)
    bank.add_to_cohort("a", vectors(2, 4), torch.tensor([0.01, -0.02]), limit=10)
    saved = set()
    for attempt in range(8):  # safetensors writes its metadata in hash-map order; the bank sorts it
        bank.save(tmp_path / f"{attempt}.safetensors")
        saved.add((tmp_path / f"{attempt}.safetensors").read_bytes())
    assert len(saved) == 1 and len({bank.snapshot("a") for _ in range(8)}) == 1


def test_a_cohort_is_saved_with_its_score_shifts_and_old_readers_ignore_it(tmp_path: Path) -> None:
    import safetensors

    bank = SpeakerBank("e1", 4)
    bank.enroll("a", vectors(3, 4))
    bank.enroll("b", vectors(2, 4, 1))
    bank.add_to_cohort("b", vectors(3, 4, 2), torch.tensor([0.1, 0.2, 0.3]), limit=2)  # the newest 2 stay
    bank.save(tmp_path / "bank.safetensors")
    loaded = SpeakerBank.load(tmp_path / "bank.safetensors")
    assert len(loaded.cohort("a")[0]) == 0
    assert torch.equal(loaded.cohort("b")[0], bank.cohort("b")[0]) and loaded.cohort("b")[1].tolist() == pytest.approx([0.2, 0.3])
    with safetensors.safe_open(str(tmp_path / "bank.safetensors"), framework="pt") as handle:
        assert handle.metadata()["version"] == "1"  # the exemplars, counts and thresholds a reader of 1 reads are unchanged


def test_the_cohort_threshold_passes_none_of_the_rejected_windows_and_never_drops_below_the_default() -> None:
    from voicewatch.bank import COHORT_MARGIN, cohort_threshold

    scores = torch.tensor([0.55, 0.62, 0.71])
    assert cohort_threshold(scores, floor=0.6) == pytest.approx(0.71 + COHORT_MARGIN)
    assert cohort_threshold(scores, floor=0.75) == 0.75
    assert cohort_threshold(torch.tensor([]), floor=0.6) == 0.6
    assert cohort_threshold(torch.tensor([0.999]), floor=0.6) == 1.0
    assert cohort_threshold(torch.linspace(0, 1, 101), floor=0.0, false_alarm_share=0.1) == pytest.approx(0.9 + COHORT_MARGIN)


def test_the_least_typical_exemplars_leave_first() -> None:
    bank = SpeakerBank("e1", 3)
    centre = torch.tensor([[1.0, 0.0, 0.0]])
    near = F.normalize(centre + 0.1 * torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]), dim=-1)
    outlier = F.normalize(torch.tensor([[0.2, 1.0, 0.0]]), dim=-1)
    bank.enroll("a", torch.cat([near[:1], outlier, near[1:]]))
    assert bank.keep_most_typical("a", 3) == 1
    assert torch.allclose(bank.exemplars("a"), near)  # the others, in their order


def test_a_snapshot_restores_a_speaker_exactly() -> None:
    bank = SpeakerBank("e1", 4)
    bank.enroll("a", vectors(3, 4))
    before = bank.snapshot("a")
    bank.enroll("a", vectors(2, 4, 5))
    bank.add_to_cohort("a", vectors(2, 4, 6), torch.zeros(2), limit=10)
    bank.recompute_threshold("a")
    bank.restore(before)
    assert bank.snapshot("a") == before and "a" not in bank._thresholds and len(bank.cohort("a")[0]) == 0
