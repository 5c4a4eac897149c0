"""The corpus builder (`python -m voicewatch.training.voices`) refuses to start without what it needs."""

from __future__ import annotations

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
