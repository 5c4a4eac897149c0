"""The corpus builder (`python -m voicewatch.training.voices`) refuses to start without what it needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
