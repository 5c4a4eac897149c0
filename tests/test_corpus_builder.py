"""The corpus builder (`python -m voicewatch.training.voices`) refuses to start without what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voicewatch.training.voices import CorpusError, run_tool, synthesise


def build_corpus(out: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicewatch.training.voices", str(out), "--cache", str(out.parent / "cache"),
                           *args], capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": path})


def test_missing_synthesisers_stop_the_build_before_anything_is_written(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = build_corpus(tmp_path / "corpus", path=str(empty))
    assert result.returncode == 2, result.stderr
    assert "missing Debian packages:" in result.stderr and "Traceback" not in result.stderr
    for package in ("espeak-ng", "flite", "festival"):
        assert package in result.stderr
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "cache").exists()


def test_a_nonsense_sentence_count_is_refused(tmp_path: Path) -> None:
    result = build_corpus(tmp_path / "corpus", "--per-speaker", "0", path=os.environ["PATH"])
    assert result.returncode == 2 and "--per-speaker must be 1 or more" in result.stderr
    assert not (tmp_path / "corpus").exists()


def test_a_failing_tool_is_named_with_its_own_message() -> None:
    with pytest.raises(CorpusError, match=r"sh -c .* failed \(exit 3\): no such voice"):
        run_tool(["sh", "-c", "echo 'no such voice' >&2; exit 3"])


def test_a_synthesiser_that_exits_cleanly_without_audio_is_an_error_not_a_crash() -> None:
    with pytest.raises(CorpusError, match="sh wrote no audio: SIOD ERROR: could not open file hindi_phones.scm"):
        synthesise(["namaste"], lambda _, text_file, wav: ["sh", "-c", "echo 'SIOD ERROR: could not open file "
                                                          "hindi_phones.scm' >&2; exit 0"])


def test_fish_fillets_lines_are_split_by_role_and_side_characters_and_empty_lines_are_left_out(tmp_path: Path) -> None:
    from voicewatch.training.voices import RATE, fillets_speakers

    tone = (0.1 * np.sin(np.arange(RATE) * 0.05)).astype(np.float32)
    for language in ("cs", "nl"):
        folder = tmp_path / "cache" / f"fillets-ng-data-{language}" / "usr/share/games/fillets-ng/sound/wreck" / language
        folder.mkdir(parents=True)
        for name in ("vrak-m-knihy", "vrak-m-dvere", "vrak-v-knihy", "vrak-hs-konec", "init-1"):
            soundfile.write(str(folder / f"{name}.ogg"), tone, RATE)
        (folder / "vrak-v-prazdna.ogg").write_bytes(b"")  # the packages ship a few empty lines
    entries = fillets_speakers(tmp_path / "cache", tmp_path / "corpus")
    assert [(e["speaker"], len(e["files"])) for e in entries] == [
        ("fillets-cs-m", 2), ("fillets-cs-v", 1), ("fillets-nl-m", 2), ("fillets-nl-v", 1)]
    assert {e["split"] for e in entries} == {"train"} and {e["licence"] for e in entries} == {"GPL-2"}


def test_music_excerpts_are_the_middle_of_each_long_enough_track_with_package_licence_and_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicewatch.training import voices

    monkeypatch.setattr(voices, "MUSIC_SOURCES", {"game-music": ("usr/share/music", "GPL-2+", "train"),
                                                  "other-music": ("usr/share/tracks", "CC-BY-SA-3.0", "val")})
    monkeypatch.setattr(voices, "MUSIC_EXCERPT_SECONDS", 2)
    ramp = np.linspace(-0.5, 0.5, 6 * voices.RATE, dtype=np.float32)  # 6 s: the excerpt is seconds 2–4
    for package, inside in (("game-music", "usr/share/music/act1"), ("other-music", "usr/share/tracks")):
        folder = tmp_path / "cache" / package / inside
        folder.mkdir(parents=True)
        soundfile.write(str(folder / "theme.ogg"), ramp, voices.RATE)
        soundfile.write(str(folder / "sting.ogg"), ramp[: voices.RATE], voices.RATE)  # 1 s: too short, left out
    entries = voices.music_excerpts(tmp_path / "cache", tmp_path / "corpus")
    assert entries == [
        {"file": "music/game-music-theme.flac", "package": "game-music", "licence": "GPL-2+", "split": "train"},
        {"file": "music/other-music-theme.flac", "package": "other-music", "licence": "CC-BY-SA-3.0", "split": "val"}]
    excerpt, rate = soundfile.read(str(tmp_path / "corpus/music/game-music-theme.flac"), dtype="float32")
    assert rate == voices.RATE and len(excerpt) == 2 * voices.RATE
    assert excerpt[0] == pytest.approx(-0.5 / 3, abs=0.01) and excerpt[-1] == pytest.approx(0.5 / 3, abs=0.01)


def test_a_data_package_whose_layout_changed_stops_the_build_with_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicewatch.training import voices

    (tmp_path / "cache" / "kajongg" / "usr/share/kajongg/voices").mkdir(parents=True)  # no voice folders any more
    with pytest.raises(CorpusError, match=r"kajongg: no clips found for kajongg-female1"):
        voices.kajongg_speakers(tmp_path / "cache", tmp_path / "corpus")
    monkeypatch.setattr(voices, "MUSIC_SOURCES", {"game-music": ("usr/share/music", "GPL-2+", "val")})
    folder = tmp_path / "cache" / "game-music" / "usr/share/music"
    folder.mkdir(parents=True)
    soundfile.write(str(folder / "sting.ogg"), np.zeros(voices.RATE, dtype=np.float32), voices.RATE)  # 1 s only
    with pytest.raises(CorpusError, match=r"game-music: no track of 30 s or more under usr/share/music"):
        voices.music_excerpts(tmp_path / "cache", tmp_path / "corpus")


def _als(path: Path, seconds: float) -> None:
    """A raw Drascula line: unsigned 8-bit PCM at 11,025 Hz."""
    t = np.arange(int(seconds * 11025)) / 11025
    path.write_bytes((128 + 60 * np.sin(2 * np.pi * 220 * t)).astype(np.uint8).tobytes())


def test_drascula_casts_become_test_voices_by_character_leaving_out_links_short_lines_and_small_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicewatch.training import voices

    monkeypatch.setattr(voices, "DRASCULA_MIN_SECONDS", 2.0)
    english = tmp_path / "cache/drascula/usr/share/scummvm/drascula/en"
    spanish = tmp_path / "cache/drascula-spanish/usr/share/scummvm/drascula/es"
    english.mkdir(parents=True)
    spanish.mkdir(parents=True)
    for name, seconds in (("12", 1.5), ("D60", 1.0), ("D3", 2.5), ("D70", 1.0), ("T1", 0.1), ("B61", 3.0),
                          ("S4", 3.0)):  # S: sound effects, no one's voice
        _als(english / f"{name}.ALS", seconds)
    for name, seconds in (("12", 1.0), ("366", 1.5), ("D3", 2.0)):
        _als(spanish / f"{name}.ALS", seconds)
    (spanish / "B61.ALS").symlink_to("../en/B61.ALS")  # an English take under a Spanish name
    entries = voices.drascula_speakers(tmp_path / "cache", tmp_path / "corpus")
    assert [(e["speaker"], e["package"], len(e["files"])) for e in entries] == [
        ("drascula-en-hacker", "drascula", 2), ("drascula-en-drascula", "drascula", 1),
        ("drascula-en-drunk", "drascula", 1), ("drascula-es-hacker", "drascula-spanish", 2),
        ("drascula-es-drascula", "drascula-spanish", 1)]  # the blind man's 1 s and Spanish drunk's link: left out
    assert {e["split"] for e in entries} == {"test"} and {e["kind"] for e in entries} == {"human"}
    assert {e["licence"] for e in entries} == {voices.DRASCULA_LICENCE}
    line, rate = soundfile.read(str(tmp_path / "corpus" / entries[1]["files"][0]), dtype="float32")
    assert rate == voices.RATE and len(line) == pytest.approx(2.5 * voices.RATE, abs=2)
    assert np.abs(line).max() == pytest.approx(60 / 128, abs=0.03)


def test_the_test_set_alone_is_its_voices_and_the_validation_music(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicewatch.training import voices

    monkeypatch.setattr(voices, "DRASCULA_MIN_SECONDS", 1.0)
    monkeypatch.setattr(voices, "MUSIC_EXCERPT_SECONDS", 2)
    monkeypatch.setattr(voices, "MUSIC_SOURCES", {"train-music": ("usr/share/a", "GPL-2+", "train"),
                                                  "val-music": ("usr/share/b", "GPL-2", "val")})
    for package, inside in (("drascula", "en"), ("drascula-spanish", "es")):
        folder = tmp_path / "cache" / package / "usr/share/scummvm/drascula" / inside
        folder.mkdir(parents=True)
        _als(folder / "VB1.ALS", 1.5)
    (tmp_path / "cache/val-music/usr/share/b").mkdir(parents=True)
    soundfile.write(str(tmp_path / "cache/val-music/usr/share/b/theme.ogg"), np.zeros(3 * voices.RATE, np.float32) + 0.1,
                    voices.RATE)  # train-music is not in the cache: fetching it would fail the test
    manifest = voices.build_test_set(tmp_path / "corpus", tmp_path / "cache")
    written = json.loads((tmp_path / "corpus/manifest.json").read_text())
    assert written == manifest
    assert [(e["speaker"], e["split"]) for e in written["speakers"]] == [("drascula-en-vonbraun", "test"),
                                                                         ("drascula-es-vonbraun", "test")]
    assert [(m["package"], m["split"]) for m in written["music"]] == [("val-music", "val")]
