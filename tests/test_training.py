"""Training parts: the loss the notes define, mining outside the batch, the verification figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthetic_voices import VOICES, synthetic_corpus
from voicewatch.degrade import CHORDS_RMS, recorded_bed, telephone
from voicewatch.embedder import Architecture, Embedder, EmbedderNet
from voicewatch.features import FeatureSettings
from voicewatch.training.augment import augment
from voicewatch.training.classifier import MarginClassifier
from voicewatch.training.data import Windows, build_windows, check_sources, without_sources
from voicewatch.training.distill import distill_loss, load_teacher, similarity_loss, teacher_targets
from voicewatch.training.errorrates import eer, min_dcf
from voicewatch.training.train import (
    batch_all,
    batch_hard,
    copy_sources,
    mine_outside,
    parse_speeds,
    sample_batch,
    triplet_terms,
)
from voicewatch.training.trials import window_trials
from voicewatch.training.windowcache import cache_key, cached


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_triplet_term_is_margin_plus_negative_minus_positive_cosine_clamped_at_zero() -> None:
    anchor, positive, negative = unit([1, 0]), unit([1, 0]), unit([0, 1])
    assert triplet_terms(anchor, positive, negative, 0.3).item() == pytest.approx(0.0)  # 0.3 + 0 - 1 < 0
    assert triplet_terms(anchor, negative, positive, 0.3).item() == pytest.approx(1.3)  # 0.3 + 1 - 0
    assert triplet_terms(anchor, unit([1, 1]), unit([1, 0.9]), 0.3).item() == pytest.approx(
        0.3 + float(unit([1, 0.9]) @ unit([1, 0]).T) - float(unit([1, 1]) @ unit([1, 0]).T), abs=1e-6)


def test_batch_hard_takes_the_farthest_positive_and_the_nearest_negative() -> None:
    embeddings = unit([1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1])
    labels = torch.tensor([0, 0, 1, 1])
    loss = batch_hard(embeddings, labels, 0.3)
    # anchor 0: positive 1 (cos .8), nearest negative 2 (cos .6) → 0.3 + .6 - .8
    assert loss[0].item() == pytest.approx(0.1, abs=1e-6)


def test_batch_all_averages_only_the_violating_triplets() -> None:
    embeddings = unit([1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1])
    labels = torch.tensor([0, 0, 1, 1])
    sims = embeddings @ embeddings.T
    expected = [0.3 + sims[a, n] - sims[a, p] for a, p in ((0, 1), (1, 0), (2, 3), (3, 2)) for n in
                ((2, 3) if a < 2 else (0, 1))]
    violating = [float(v) for v in expected if v > 0]
    assert batch_all(embeddings, labels, 0.3).item() == pytest.approx(sum(violating) / len(violating), abs=1e-6)


def test_mining_outside_the_batch_picks_the_most_similar_window_of_another_speaker() -> None:
    anchors = unit([1, 0, 0], [0, 1, 0])
    pool = unit([0.9, 0.1, 0], [1, 0, 0], [0, 0.95, 0.05], [0.5, 0.5, 0])
    pool_labels = torch.tensor([7, 0, 1, 3])  # row 1 is anchor 0's own speaker: never a negative for it
    assert mine_outside(anchors, torch.tensor([0, 1]), pool, pool_labels).tolist() == [0, 3]


def test_eer_and_min_dcf_on_known_scores() -> None:
    assert eer(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2, 0.3])) == 0.0
    assert eer(np.array([0.9, 0.4]), np.array([0.5, 0.1])) == pytest.approx(0.5)
    assert min_dcf(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 0.0


def test_window_trials_use_top5_bank_scoring_per_speaker() -> None:
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(3, 16), dim=-1)
    embeddings = F.normalize(centres.repeat_interleave(10, 0) + 0.05 * torch.randn(30, 16), dim=-1)
    target, impostor = window_trials(embeddings, torch.arange(3).repeat_interleave(10))
    assert len(target) == 15 and len(impostor) == 30
    assert eer(target, impostor) == 0.0


def test_a_few_steps_of_triplet_training_separate_two_synthetic_speakers() -> None:
    torch.manual_seed(0)
    net = EmbedderNet(128, Architecture((16,), 3, 8, centre_bands=(False,)))  # they differ in their mean spectrum
    low = torch.randn(16, 128, 98) + torch.linspace(1, -1, 128)[None, :, None]
    high = torch.randn(16, 128, 98) + torch.linspace(-1, 1, 128)[None, :, None]
    features, labels = torch.cat([low, high]), torch.tensor([0] * 16 + [1] * 16)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = batch_hard(net(features), labels, 0.3).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5


def test_distillation_loss_is_one_minus_the_cosine_between_the_projected_student_and_the_teacher() -> None:
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    student = unit([1, 0], [0, 1])
    teachers = unit([1, 0, 0], [1, 0, 0])
    assert distill_loss(head, student, teachers).item() == pytest.approx((0 + 1) / 2)


def test_similarity_loss_compares_pairwise_cosines_whatever_the_two_embedding_sizes() -> None:
    student = unit([1, 0], [0, 1])  # orthogonal pair: cosine 0
    assert similarity_loss(student, unit([1, 0, 0], [0, 0, 1])).item() == 0.0  # the teacher agrees
    # the teacher says the pair is the same voice (cosine 1): the two off-diagonal entries are off by 1
    assert similarity_loss(student, unit([1, 0, 0], [1, 0, 0])).item() == pytest.approx(2 / 4)


def test_the_margin_classifier_is_softmax_cross_entropy_of_scaled_cosines_with_the_margin_off_the_true_class() -> None:
    classifier = MarginClassifier(dim=2, classes=2, scale=10.0, margin=0.2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))  # class vectors are normalised
    embeddings, labels = unit([1, 0], [1, 0]), torch.tensor([0, 1])
    # first row: cosines (1, 0) → logits (10·0.8, 0); second row: cosines (1, 0) → logits (10, 10·(0 − 0.2))
    expected = (F.cross_entropy(torch.tensor([[8.0, 0.0]]), torch.tensor([0]))
                + F.cross_entropy(torch.tensor([[10.0, -2.0]]), torch.tensor([1]))) / 2
    assert classifier.loss(embeddings, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_teacher_targets_are_embedded_in_batches_in_window_order() -> None:
    class LevelTeacher:
        name, dim, calls = "level", 2, 0

        def embed(self, waves: torch.Tensor, rate: int) -> torch.Tensor:
            self.calls += 1
            return F.normalize(torch.stack([waves.mean(1), torch.ones(len(waves))], 1), dim=1)

    teacher = LevelTeacher()
    windows = np.arange(5, dtype=np.float32)[:, None].repeat(4, axis=1)
    targets = teacher_targets(teacher, windows, 16000, batch=2)
    assert teacher.calls == 3 and targets.shape == (5, 2)
    assert torch.allclose(targets, F.normalize(torch.tensor([[float(i), 1.0] for i in range(5)]), dim=1))


def test_an_ensemble_teacher_is_its_members_side_by_side_so_its_cosine_is_the_mean_of_theirs(tmp_path: Path) -> None:
    paths = []
    for seed, dim in ((0, 8), (1, 4)):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.safetensors")
        Embedder.create(Architecture((16,), 3, dim)).save(paths[-1])
    teacher = load_teacher(",".join(map(str, paths)))
    members = [Embedder.load(p, device="cpu") for p in paths]
    features = torch.randn(2, 128, 50)
    joined = teacher.embed_features(features)
    assert joined.shape == (2, 12) and teacher.dim == 12
    assert torch.allclose(joined.norm(dim=1), torch.ones(2))
    member_cosines = [(lambda e: e[0] @ e[1])(m.embed_features(features)) for m in members]
    assert (joined[0] @ joined[1]).item() == pytest.approx(sum(member_cosines).item() / 2, abs=1e-5)
    with pytest.raises(ValueError, match="missing.safetensors' is neither 'resemblyzer' nor a model file"):
        load_teacher(f"{paths[0]},{tmp_path / 'missing.safetensors'}")


def test_the_window_cache_builds_once_per_recipe_and_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.json").write_text('{"speakers": []}')
    built = []

    def build() -> Windows:
        built.append(1)
        return Windows(torch.randn(3, 128, 10).half(), torch.tensor([0, 0, 1]), ["a", "b"])

    key = cache_key(corpus, split="train", copies=3, seed=1)
    first = cached(tmp_path / "cache", key, Windows, build)
    again = cached(tmp_path / "cache", key, Windows, build)
    assert len(built) == 1 and torch.equal(again.features, first.features) and again.speakers == ["a", "b"]
    assert again.targets is None
    assert cache_key(corpus, split="train", copies=3, seed=2) != key
    (corpus / "manifest.json").write_text('{"speakers": [{"speaker": "new"}]}')
    assert cache_key(corpus, split="train", copies=3, seed=1) != key
    cached(None, key, Windows, build)
    assert len(built) == 2  # no cache folder: always built
    (tmp_path / "cache" / f"{key}.pt").write_bytes(b"not a torch file")
    rebuilt = cached(tmp_path / "cache", key, Windows, build)
    assert len(built) == 3 and rebuilt.speakers == ["a", "b"]  # a damaged file is prepared again and replaced
    assert torch.equal(cached(tmp_path / "cache", key, Windows, build).features, rebuilt.features) and len(built) == 3


def test_each_training_row_knows_the_clean_window_it_is_a_copy_of(tmp_path: Path) -> None:
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4)
    data = build_windows(corpus, "train", FeatureSettings(), copies=3, seed=1, speeds=(1.0, 1.1))
    sources = copy_sources(data.labels, data.speakers, 3)
    rows = torch.arange(len(sources))
    features = data.features.float().flatten(1)
    degraded = 0
    for label, name in enumerate(data.speakers):
        own = rows[data.labels == label]
        clean = own[sources[own] == own]
        if name.startswith("~"):  # noise, music, quiet: one copy of each window
            assert len(clean) == len(own)
            continue
        assert len(clean) * 3 == len(own) and torch.equal(torch.bincount(sources[own])[clean], torch.full_like(clean, 3))
        for row in own[sources[own] != own]:  # a degraded copy is nearest to its own clean window, mostly
            nearest = clean[((features[clean] - features[row]) ** 2).sum(1).argmin()]
            degraded += int(nearest == sources[row])
    assert degraded >= 0.8 * int((sources != rows).sum())  # a misread layout pairs far fewer
    batch = sample_batch(data.labels, 6, 4, np.random.default_rng(0), sources)
    for label in data.labels[batch].unique():
        drawn = batch[data.labels[batch] == label]
        if data.speakers[int(label)].startswith("~"):
            assert len(drawn.unique()) == 4
        else:  # two windows, each in two different copies
            assert len(drawn.unique()) == 4 and sorted(torch.bincount(sources[drawn]).tolist())[-2:] == [2, 2]


def test_holding_out_a_source_drops_its_voices_with_every_speed_and_augmented_copy(tmp_path: Path) -> None:
    sources = {"low": "a-data", "mid": "a-data", "high": "b-data"}
    corpus = synthetic_corpus(tmp_path / "corpus", {"train": VOICES[:3], "val": VOICES[3:]}, clips=4, sources=sources)
    data = build_windows(corpus, "train", FeatureSettings(), copies=2, seed=1, speeds=(1.0, 1.1))
    kept = without_sources(data, corpus, ("a-data",))
    assert kept.speakers == ["high", "high@1.1", "~noise", "~music", "~quiet"]
    assert torch.equal(kept.labels.unique(), torch.arange(5))  # renumbered: batches draw labels 0…N-1
    for label, name in enumerate(kept.speakers):  # the same rows, in the same order
        assert torch.equal(kept.features[kept.labels == label], data.features[data.labels == data.speakers.index(name)])
    removed = int((data.labels < data.speakers.index("high")).sum())  # the a-data voices come first
    assert torch.equal(copy_sources(kept.labels, kept.speakers, 2),  # copies still pair with their clean window
                       copy_sources(data.labels, data.speakers, 2)[removed:] - removed)
    assert without_sources(data, corpus, ()) is data
    check_sources(corpus, ("a-data", "b-data"))
    with pytest.raises(ValueError, match="no voice of .* comes from nowhere-data; its sources are a-data, b-data"):
        check_sources(corpus, ("a-data", "nowhere-data"))


def test_speeds_start_with_the_voice_itself_and_stay_distinct_and_plausible() -> None:
    assert parse_speeds("1.0,0.88,1.12") == (1.0, 0.88, 1.12)
    for bad in ("0.9,1.0", "1.0,1.0", "1.0,3", "1.0,fast", ""):
        with pytest.raises(ValueError, match="--speeds"):
            parse_speeds(bad)


def test_augmentation_keeps_shape_and_band_limits_the_telephone_copy() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(44100) / 22050
    waves = np.stack([np.sin(2 * np.pi * 6000 * t), np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    assert augment(waves, 22050, rng).shape == waves.shape
    phone = telephone(waves, 22050)
    assert np.abs(phone[0][2000:-2000]).max() < 0.05 and np.abs(phone[1]).max() > 0.5  # 6 kHz gone, 440 Hz kept


def test_a_recorded_bed_is_a_stretch_of_one_track_as_loud_as_the_chords_even_from_a_short_track() -> None:
    rng = np.random.default_rng(0)
    short, long = np.full(1000, 0.01, dtype=np.float32), np.sin(np.arange(100_000) * 0.3).astype(np.float32)
    for _ in range(10):
        bed = recorded_bed(44100, [short, long], rng)
        assert bed.shape == (44100,) and np.sqrt(np.mean(bed**2)) == pytest.approx(CHORDS_RMS, rel=1e-3)
    only_short = recorded_bed(44100, [short], rng)
    assert np.allclose(only_short, only_short[0])  # the short constant track, repeated


def test_augmentation_with_recorded_music_keeps_shape_and_mixes_some_of_it_in() -> None:
    t = np.arange(44100) / 22050
    waves = np.tile(np.sin(2 * np.pi * 440 * t).astype(np.float32), (40, 1))
    tone = np.sin(2 * np.pi * 3000 * np.arange(22050 * 5) / 22050).astype(np.float32)  # the "recording"
    out = augment(waves, 22050, np.random.default_rng(1), coded_share=0.0, music=[tone])
    assert out.shape == waves.shape
    at_3k = np.abs(np.fft.rfft(out, axis=1))[:, 6000]  # bin of 3 kHz for 2 s windows
    assert (at_3k > 1000).sum() >= 3  # the recorded tone lies under some windows


def test_the_music_share_decides_how_many_copies_lie_under_music() -> None:
    t = np.arange(44100) / 22050
    waves = np.tile(np.sin(2 * np.pi * 440 * t).astype(np.float32), (200, 1))
    tone = np.sin(2 * np.pi * 3000 * np.arange(22050 * 5) / 22050).astype(np.float32)  # the "recording"

    def under_the_recording(share: float) -> int:
        out = augment(waves, 22050, np.random.default_rng(1), coded_share=0.0, music=[tone], music_share=share)
        return int((np.abs(np.fft.rfft(out, axis=1))[:, 6000] > 1000).sum())

    # the recording lies under half the music beds: about 100 × share of the 200 rows
    assert under_the_recording(0.0) == 0
    assert 20 <= under_the_recording(0.3) <= 40 and 45 <= under_the_recording(0.6) <= 75
    for bad in (-0.1, 0.8, float("nan")):
        with pytest.raises(ValueError, match="music share must be from 0 to 0.75"):
            augment(waves[:2], 22050, np.random.default_rng(1), music=[tone], music_share=bad)


def test_the_shipped_model_loads_and_embeds_unit_vectors() -> None:
    embedder = Embedder.load()
    vectors = embedder.embed(torch.randn(3, 32000) * 0.1, 16000)
    assert vectors.shape == (3, embedder.dim)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("codec", ["mp2", "aac"])
def test_a_broadcast_codec_round_trip_keeps_the_signal_aligned_and_cuts_the_top_band(codec: str) -> None:
    from voicewatch.training.codecs import codec_roundtrip

    t = np.arange(22050 * 2) / 22050
    speechlike = (np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) * 0.3).astype(np.float32)
    coded = codec_roundtrip(speechlike, 22050, codec, 48000)
    assert coded.shape == speechlike.shape
    assert np.corrcoef(speechlike[2000:-2000], coded[2000:-2000])[0, 1] > 0.98  # same signal, same place
    hiss = np.random.default_rng(0).normal(0, 0.05, 22050 * 2).astype(np.float32)
    kept = np.abs(np.fft.rfft(codec_roundtrip(hiss, 22050, codec, {"mp2": 32000, "aac": 16000}[codec])))
    assert kept[-len(kept) // 8:].mean() < 0.5 * np.abs(np.fft.rfft(hiss))[-len(kept) // 8:].mean()  # top band thinned
