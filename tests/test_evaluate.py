"""`voicewatch eval`: error rates that mean what they say, segment scoring against ground truth,
RTTM in and out, and the whole command on a small corpus and on the shipped demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from daemon_harness import run_cli
from synthetic_voices import VOICES, synthetic_corpus, synthetic_voice
from voicewatch.bank import SpeakerBank
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING, DEMO_TRUTH
from voicewatch.training.errorrates import eer, min_dcf
from voicewatch.training.scorenorm import Cohort, as_norm, speaker_thresholds
from voicewatch.training.segments import read_rttm, rttm_lines, segment_counts, segment_scores


def test_eer_is_one_half_for_chance_and_zero_for_separable_scores() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=20000)
    assert eer(same[:10000], same[10000:]) == pytest.approx(0.5, abs=0.02)
    assert eer(rng.normal(3, 0.1, 500), rng.normal(0, 0.1, 5000)) == 0.0
    assert eer(rng.normal(1, 1, 20000), rng.normal(0, 1, 20000)) == pytest.approx(0.3085, abs=0.01)  # Φ(−0.5)


def test_min_dcf_is_zero_when_separable_and_at_most_one_otherwise() -> None:
    rng = np.random.default_rng(1)
    assert min_dcf(rng.normal(3, 0.1, 500), rng.normal(0, 0.1, 5000)) == 0.0
    chance = rng.normal(size=4000)
    assert 0.9 <= min_dcf(chance[:2000], chance[2000:]) <= 1.0  # never better than rejecting everything


def _voice(centre: torch.Tensor, spread: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(centre + spread * torch.randn(count, len(centre), generator=generator), dim=1)


def test_as_norm_and_cohort_thresholds_undo_a_voice_that_draws_high_impostor_scores() -> None:
    # "crowded" sits among many similar voices (a neighbour and most of the cohort): its impostors score
    # above the targets of "lonely", a loose voice far from everyone, so no single raw threshold separates them.
    generator = torch.Generator().manual_seed(0)
    unit = lambda v: torch.nn.functional.normalize(v, dim=0)  # noqa: E731
    base, lonely = unit(torch.randn(32, generator=generator)), unit(torch.randn(32, generator=generator))
    crowd = [unit(base + 0.1 * torch.randn(32, generator=generator)) for _ in range(12)]
    bank = SpeakerBank("test", 32)
    bank.enroll("crowded", _voice(crowd[0], 0.05, 20, generator))
    bank.enroll("lonely", _voice(lonely, 0.2, 20, generator))
    tests = torch.cat([_voice(crowd[0], 0.05, 40, generator), _voice(lonely, 0.2, 40, generator),
                       _voice(crowd[1], 0.05, 40, generator)])  # the last 40: the neighbour, enrolled nowhere
    others = [unit(torch.randn(32, generator=generator)) for _ in range(10)]
    cohort = Cohort.from_voices({f"c{i}": _voice(d, 0.05, 10, generator) for i, d in enumerate(crowd[2:] + others)})
    scores = bank.score(tests).numpy()
    is_target = np.zeros_like(scores, dtype=bool)
    is_target[:40, 0] = is_target[40:80, 1] = True
    assert eer(scores[is_target], scores[~is_target]) > 0.1
    normalised = as_norm(scores, tests, bank, cohort, top_k=10)
    assert eer(normalised[is_target], normalised[~is_target]) == 0.0
    crowded, alone = speaker_thresholds(bank, cohort, 0.99)
    assert crowded > alone + 0.3  # the crowded voice's threshold rises above its neighbours' scores
    assert (scores[80:, 0] < crowded).mean() > 0.5 and (scores[40:80, 1] >= alone).all()


def test_segments_are_scored_on_speaking_time_and_false_alarms_counted() -> None:
    truth = [(10.0, 20.0), (40.0, 50.0)]
    found = [(12.0, 22.0), (60.0, 61.0)]  # 8 s right, 2 s over, 1 s false alarm; misses 2 s + 10 s
    counts = segment_counts(found, truth, seconds=3600.0)
    assert counts["tp_s"] == pytest.approx(8.0) and counts["fp_s"] == pytest.approx(3.0)
    assert counts["fn_s"] == pytest.approx(12.0) and counts["false_alarms"] == 1
    scores = segment_scores([counts])
    assert scores["precision"] == pytest.approx(8 / 11, abs=1e-4) and scores["recall"] == pytest.approx(0.4)
    assert scores["false_alarms_per_hour"] == 1.0
    assert segment_scores([segment_counts(truth, truth, 100.0)])["f1"] == 1.0


def test_rttm_round_trips_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "truth.rttm"
    path.write_text("\n".join(rttm_lines("ch3", "alice", [(1.5, 4.0), (9.0, 12.25)]) + rttm_lines("ch3", "bob", [(4.0, 9.0)]))
                    + "\n")
    assert read_rttm(path) == {"ch3": {"alice": [(1.5, 4.0), (9.0, 12.25)], "bob": [(4.0, 9.0)]}}
    path.write_text("SPEAKER ch3 1 one 2.0 <NA> <NA> alice <NA> <NA>\n")
    with pytest.raises(ValueError, match="truth.rttm:1"):
        read_rttm(path)


def test_the_shipped_demo_scored_against_its_rttm_finds_alice(tmp_path: Path) -> None:
    truth = json.loads(DEMO_TRUTH.read_text())["speaker_segments"]
    rttm = tmp_path / "demo.rttm"
    rttm.write_text("".join(line + "\n" for s in truth for line in rttm_lines("demo", s["speaker"], [(s["start"], s["end"])])))
    found = tmp_path / "found.rttm"
    result = run_cli("eval", "--rttm", str(rttm), "--bank", str(DEMO_BANK), str(DEMO_RECORDING), "--rttm-out", str(found),
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["streams"]["all"]["f1"] >= 0.9
    assert read_rttm(found)["demo"]["alice"]


def test_a_peer_is_walked_through_streams_the_way_the_product_walks_them(tmp_path: Path) -> None:
    """The peers' window path, given our own model as its encoder, finds exactly what `scan` finds."""
    import torchaudio

    from voicewatch.audiofile import read_audio
    from voicewatch.config import Config
    from voicewatch.embedder import Embedder
    from voicewatch.training.segments import scan_finder, window_finder
    from voicewatch.training.streams import RATE, Stream
    from voicewatch.training.trials import embedder_function

    samples, rate = read_audio(DEMO_RECORDING)
    audio = torchaudio.functional.resample(torch.from_numpy(samples.reshape(len(samples), -1).mean(1)), rate, RATE).numpy()
    stream = Stream("demo.clean", "alice", "clean", audio, [])
    shipped, bank = Embedder.load(device="cpu"), SpeakerBank.load(DEMO_BANK)
    # a peer has no score shift: our model runs without its own on both paths
    embedder = Embedder(shipped.net, shipped.settings, model_id=shipped.model_id, threshold=shipped.threshold)
    by_scan = scan_finder(embedder, bank, Config(), tmp_path)(stream)
    by_windows = window_finder(embedder_function(embedder, RATE), bank, Config())(stream)
    assert {s.speaker for s in by_scan} >= {"alice"}
    assert [(s.speaker, s.start, s.end) for s in by_windows] == [(s.speaker, s.start, s.end) for s in by_scan]
    assert [s.peak for s in by_windows] == pytest.approx([s.peak for s in by_scan], abs=1e-3)


def test_target_streams_search_each_stream_for_its_target_alone(tmp_path: Path) -> None:
    """The product's usual task: one person sought, every other voice on the stream unknown to the bank."""
    import torchaudio

    from voicewatch.audiofile import read_audio
    from voicewatch.config import Config
    from voicewatch.embedder import Embedder
    from voicewatch.training.segments import evaluate_target_streams, window_finder
    from voicewatch.training.streams import RATE, Stream, Turn
    from voicewatch.training.trials import embedder_function

    samples, rate = read_audio(DEMO_RECORDING)
    audio = torchaudio.functional.resample(torch.from_numpy(samples.reshape(len(samples), -1).mean(1)), rate, RATE).numpy()
    truth = json.loads(DEMO_TRUTH.read_text())["speaker_segments"]
    turns = [Turn(s["speaker"], s["start"], s["end"]) for s in truth]
    embedder, bank = Embedder.load(device="cpu"), SpeakerBank.load(DEMO_BANK)  # alice
    bob = np.stack([audio[round(t.start * RATE) + i * RATE:][:2 * RATE] for t in turns if t.speaker == "bob"
                    for i in range(int(t.end - t.start) - 2)])
    bank.enroll("bob", embedder.embed(torch.from_numpy(bob), RATE))
    searched_with = []

    def finder(alone: SpeakerBank):
        searched_with.append(alone.names)
        return window_finder(embedder_function(embedder, RATE), alone, Config())

    streams = [Stream(f"demo.{name}", name, "clean", audio, turns) for name in bank.names]
    scores = evaluate_target_streams(streams, bank, finder)
    assert searched_with == [["alice"], ["bob"]] and bank.names == ["alice", "bob"]  # the bank itself is untouched
    assert set(scores) == {"clean", "all"} and scores["all"]["f1"] >= 0.8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_corpus(tmp_path_factory.mktemp("corpus"), {"val": VOICES[:3], "train": VOICES[3:]})


def test_the_music_of_validation_streams_comes_from_the_recordings_given_and_chords_otherwise() -> None:
    from voicewatch.enrollment import Clip
    from voicewatch.training.streams import RATE, build_streams

    heard = {name: [Clip(name, synthetic_voice(f0, formants, 2.0, seed), 2.0)]
             for seed, (name, f0, formants) in enumerate(VOICES[:2])}
    recording = np.sin(2 * np.pi * 3000 * np.arange(RATE * 40) / RATE).astype(np.float32)

    def share_at_3k(stream: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(stream)) ** 2
        band = np.fft.rfftfreq(len(stream), 1 / RATE)
        return float(spectrum[np.abs(band - 3000) < 5].sum() / spectrum.sum())

    recorded = {s.name: s for s in build_streams(heard, 0, ("clean", "music"), music=[recording])}
    chords = {s.name: s for s in build_streams(heard, 0, ("clean", "music"))}
    assert share_at_3k(recorded["low.music"].audio) > 0.1 > 0.01 > share_at_3k(chords["low.music"].audio)
    assert share_at_3k(recorded["low.clean"].audio) > 0.01  # the music between turns


def test_a_missing_or_silent_music_excerpt_is_left_out_with_a_warning_and_the_rest_is_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from voicewatch.training.streams import RATE, recorded_music

    (tmp_path / "music").mkdir()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE * 3) / RATE)).astype(np.float32)
    soundfile.write(str(tmp_path / "music/tune.flac"), tone, RATE)
    soundfile.write(str(tmp_path / "music/silence.flac"), np.zeros(RATE * 3, dtype=np.float32), RATE)
    (tmp_path / "music/broken.flac").write_bytes(b"not a flac file")
    entries = [{"file": f"music/{name}.flac", "package": "p", "licence": "GPL-2+", "split": split}
               for name, split in (("tune", "val"), ("silence", "val"), ("broken", "val"), ("gone", "val"),
                                   ("tune", "train"))]
    (tmp_path / "manifest.json").write_text(json.dumps({"rate": RATE, "speakers": [], "music": entries}))
    tracks = recorded_music(tmp_path, "val")
    assert len(tracks) == 1 and np.allclose(tracks[0][:1000], tone[:1000], atol=1e-3)
    left_out = [r.getMessage() for r in caplog.records if "music excerpt left out" in r.getMessage()]
    assert len(left_out) == 3 and all(any(name in m for m in left_out) for name in ("silence", "broken", "gone"))


def test_eval_on_a_corpus_writes_json_det_png_and_rttm(corpus: Path, tmp_path: Path) -> None:
    out, det, found = tmp_path / "eval.json", tmp_path / "det.png", tmp_path / "found.rttm"
    result = run_cli("eval", "--corpus", str(corpus), "--conditions", "clean,mp2", "--out", str(out), "--det", str(det),
                     "--rttm-out", str(found), timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout)
    assert set(report["trials"]["model"]) == {"clean", "mp2", "pooled"}
    assert 0.0 <= report["trials"]["model"]["pooled"]["eer"] <= 0.5
    assert set(report["streams"]) >= {"clean", "mp2", "all", "hours"} and report["streams"]["hours"] > 0
    assert set(report["target_streams"]) == {"clean", "mp2", "all"}
    normalisation = report["score_normalisation"]["model"]  # the tiny corpus' training voices are the cohort
    assert set(normalisation["as_norm"]) == set(normalisation["raw"]) == {"clean", "mp2", "pooled"}
    assert set(normalisation["speaker_thresholds"]) == set(report["voices"])
    assert det.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(read_rttm(found)) <= {f"{v}.{c}" for v in ("low", "mid", "high") for c in ("clean", "mp2")}


def test_eval_over_several_splits_reports_each_split_and_their_means(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "splits.json"
    result = run_cli("eval", "--corpus", str(corpus), "--conditions", "clean", "--no-cohort", "--seed", "11,12",
                     "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["splits"]) == {"11", "12"}
    alone = run_cli("eval", "--corpus", str(corpus), "--conditions", "clean", "--no-cohort", "--seed", "12", timeout=600)
    assert json.loads(alone.stdout)["trials"] == report["splits"]["12"]["trials"]  # each split as if run alone
    eers = [report["splits"][seed]["trials"]["model"]["pooled"]["eer"] for seed in ("11", "12")]
    assert report["mean"]["model pooled EER"] == {"mean": pytest.approx(sum(eers) / 2, abs=1e-4), "per_split": eers}
    assert set(report["mean"]) == {"model pooled EER", "model pooled minDCF", "model streams F1",
                                   "model target streams F1"}


@pytest.fixture(scope="module")
def test_set_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As `--test-set-only` builds one: test voices of two sources, validation music, nothing else."""
    folder = synthetic_corpus(tmp_path_factory.mktemp("testset"), {"test": VOICES[:4]}, clips=6)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry, source in zip(manifest["speakers"], ("cast-a", "cast-a", "cast-b", "cast-b"), strict=True):
        entry["package"] = source
    (folder / "music").mkdir()
    tune = (0.2 * np.sin(2 * np.pi * 330 * np.arange(22050 * 10) / 22050)).astype(np.float32)
    soundfile.write(str(folder / "music/tune.flac"), tune, 22050)
    manifest["music"] = [{"file": "music/tune.flac", "package": "p", "licence": "GPL-2+", "split": "val"}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_eval_test_scores_the_test_voices_of_a_test_set_corpus_by_source_and_pooled(
        test_set_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "test.json"
    result = run_cli("eval", "--corpus", str(test_set_corpus), "--test", "--conditions", "clean", "--out", str(out),
                     timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["voices"] == sorted(v[0] for v in VOICES[:4])
    assert {source: s["voices"] for source, s in report["sources"].items()} == {"cast-a": 2, "cast-b": 2}
    targets, impostors = report["trials"]["model"]["clean"]["trials"]
    assert targets > 0 and impostors == 3 * targets  # every window against all four voices
    assert set(report["by_source"]["model"]) == {"cast-a", "cast-b", "cross_source"}  # one bank: both casts' impostors
    assert report["score_normalisation"] == {}  # no training voices, no cohort
    assert set(report["streams"]) == {"clean", "all", "hours"} and report["threshold"] == pytest.approx(0.75, abs=0.3)


def test_eval_without_test_never_scores_test_voices(test_set_corpus: Path, corpus: Path) -> None:
    result = run_cli("eval", "--corpus", str(test_set_corpus), "--conditions", "clean", timeout=120)
    assert result.returncode == 2 and "fewer than two validation voices" in result.stderr
    assert "Traceback" not in result.stderr
    test_only = run_cli("eval", "--test", "--corpus", str(corpus), timeout=120)  # a corpus without test voices
    assert test_only.returncode == 2 and "fewer than two test voices" in test_only.stderr
    assert "--test-set-only" in test_only.stderr


def test_test_needs_a_corpus(tmp_path: Path) -> None:
    result = run_cli("eval", "--test", "--rttm", str(tmp_path / "t.rttm"), "--bank", "b", "f.wav", timeout=120)
    assert result.returncode == 2 and "--test scores a corpus' test voices: it needs --corpus" in result.stderr


@pytest.mark.parametrize(("options", "message"), [
    (("--seed", "11,x"), "seeds are whole numbers separated by commas"),
    (("--seed", "11,11"), "each seed once"),
    (("--seed", "11,12", "--det", "d.png"), "several --seed values need --corpus, and go without --det"),
])
def test_bad_seed_lists_are_refused_before_any_work(corpus: Path, options: tuple[str, ...], message: str) -> None:
    result = run_cli("eval", "--corpus", str(corpus), *options, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_eval_needs_one_kind_of_input() -> None:
    result = run_cli("eval", timeout=120)
    assert result.returncode == 2 and "give --corpus DIR, or --rttm TRUTH --bank BANK FILE" in result.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--threshold", "1.5", "--threshold must be a cosine score from -1 to 1"),
    ("--cohort-quantile", "99", "--cohort-quantile must be from 0 to 1"),
    ("--as-norm-top-k", "0", "--as-norm-top-k must be 1 or more"),
])
def test_out_of_range_settings_are_refused_before_any_work(corpus: Path, option: str, value: str, message: str) -> None:
    result = run_cli("eval", "--corpus", str(corpus), option, value, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_peer_or_corpus_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    code = "import sys; sys.modules['resemblyzer'] = None; from voicewatch.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "eval", "--corpus", str(corpus), "--peer", "resemblyzer"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'voicewatch[peer]'" in result.stderr
    nowhere = run_cli("eval", "--corpus", str(tmp_path), timeout=120)
    assert nowhere.returncode == 2 and "not a corpus folder" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_the_batched_resemblyzer_peer_embeds_as_resemblyzer_does() -> None:
    resemblyzer = pytest.importorskip("resemblyzer", reason="the optional peer extra is not installed")
    from resemblyzer.audio import normalize_volume

    from voicewatch.tools.peer import load_peer

    audio, rate = soundfile.read(str(DEMO_RECORDING), dtype="float32")
    windows = np.stack([audio[i * rate:(i + 2) * rate] for i in range(5, 9)])
    peer = load_peer("resemblyzer")
    ours = peer.embed(torch.from_numpy(windows), rate).numpy()
    at_its_rate = torch.from_numpy(windows[:, : 2 * peer.sample_rate])  # any [B, samples] at peer.sample_rate
    assert torch.equal(peer.embed(at_its_rate), peer.embed(at_its_rate, peer.sample_rate))
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    theirs = np.stack([encoder.embed_utterance(normalize_volume(w, -30, increase_only=True)) for w in windows])
    assert (ours * theirs).sum(axis=1).min() > 0.9999
