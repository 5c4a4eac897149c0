"""The `voicewatch` command line: help everywhere, enrollment that refuses bad clips clearly."""

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
from voicewatch.cli import build_parser
from voicewatch.embedder import Embedder
from voicewatch.shipped import DEMO_ENROLL, DEMO_RECORDING

COMMANDS = ["run", "scan", "replay", "tail", "enroll", "speakers", "status", "keys", "export", "bench", "demo", "source",
            "source-config", "train", "pretrain", "eval", "clip", "review", "web", "report"]


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            build_parser([name, "--help"]).parse_args([name, "--help"])
        assert exit_.value.code == 0
        assert "usage: voicewatch " + name in capsys.readouterr().out


def test_a_source_process_never_loads_torch() -> None:
    """Sources are many small processes: `voicewatch source …` must not pay for the model's imports."""
    code = ("import sys; from voicewatch.cli import main\n"
            "try: main(['source', 'dvb', '--help'])\n"
            "except SystemExit: pass\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--service" in result.stdout, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_the_installed_command_answers_help() -> None:
    result = run_cli("--help", timeout=60)
    assert result.returncode == 0 and "scan" in result.stdout


def clips() -> list[str]:
    return sorted(str(p) for p in (DEMO_ENROLL / "alice").iterdir())


def test_enroll_builds_a_bank_that_speakers_lists(tmp_path: Path) -> None:
    bank = tmp_path / "bank.safetensors"
    result = run_cli("enroll", "alice", *clips(), "--bank", str(bank))
    assert result.returncode == 0, result.stderr
    listed = run_cli("speakers", "--bank", str(bank), "--json")
    speakers = json.loads(listed.stdout)["speakers"]
    assert [s["name"] for s in speakers] == ["alice"] and speakers[0]["exemplars"] >= 5
    assert speakers[0]["threshold"] == Embedder.load(device="cpu").threshold  # a new bank starts from the model's

    removed = run_cli("speakers", "--bank", str(bank), "--remove", "alice", "--json")
    assert json.loads(removed.stdout)["speakers"] == []


def test_enroll_refuses_a_silent_clip(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros(16000 * 5, dtype=np.float32), 16000)
    result = run_cli("enroll", "alice", str(silent), "--bank", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and "no speech" in result.stderr
    assert not (tmp_path / "b.safetensors").exists()


def test_enroll_refuses_a_clip_that_is_mostly_silence(tmp_path: Path) -> None:
    speech, rate = soundfile.read(clips()[0], dtype="float32")
    padded = tmp_path / "mostly-silence.wav"
    soundfile.write(str(padded), np.concatenate([np.zeros(rate * 40, np.float32), speech[: rate * 4]]), rate)
    result = run_cli("enroll", "alice", *clips(), str(padded), "--bank", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and "mostly-silence.wav: mostly silence" in result.stderr
    assert not (tmp_path / "b.safetensors").exists()


def demo_cut(tmp_path: Path, speaker: str, start: float, end: float) -> str:
    audio, rate = soundfile.read(str(DEMO_RECORDING), dtype="float32")
    path = tmp_path / f"{speaker}-{start:g}.flac"
    soundfile.write(str(path), audio[int(start * rate):int(end * rate)], rate)
    return str(path)


def test_enroll_warns_when_a_clip_sounds_like_someone_else(tmp_path: Path) -> None:
    alice = [demo_cut(tmp_path, "alice", a, b) for a, b in ((1.0, 15.0), (40.0, 52.0), (68.0, 78.0))]
    alone = run_cli("enroll", "alice", *alice, "--bank", str(tmp_path / "a.safetensors"))
    assert alone.returncode == 0 and "someone else" not in alone.stderr, alone.stderr
    bob = demo_cut(tmp_path, "bob", 28.0, 40.0)
    mixed = run_cli("enroll", "alice", *alice, bob, "--bank", str(tmp_path / "b.safetensors"))
    assert mixed.returncode == 0  # a warning: the user decides
    warnings = [line for line in mixed.stderr.splitlines() if "sounds like someone else" in line]
    assert len(warnings) == 1 and "bob-28.flac" in warnings[0]


def test_enroll_refuses_too_little_speech(tmp_path: Path) -> None:
    result = run_cli("enroll", "alice", clips()[0], "--bank", str(tmp_path / "b.safetensors"), "--min-speech", "600")
    assert result.returncode == 2 and "at least 600.0 s are needed" in result.stderr


def test_enroll_refuses_an_unreadable_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(100))
    result = run_cli("enroll", "alice", str(broken), "--bank", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and "broken.flac" in result.stderr and "Traceback" not in result.stderr


def test_enroll_refuses_a_speaker_name_that_would_break_topics(tmp_path: Path) -> None:
    result = run_cli("enroll", "al.ice", *clips(), "--bank", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and "al.ice" in result.stderr


def test_speakers_names_an_unknown_speaker(tmp_path: Path) -> None:
    bank = tmp_path / "bank.safetensors"
    assert run_cli("enroll", "alice", *clips(), "--bank", str(bank)).returncode == 0
    result = run_cli("speakers", "--bank", str(bank), "--remove", "zoe")
    assert result.returncode == 2 and "zoe" in result.stderr


def test_scan_refuses_a_bank_made_with_another_model(tmp_path: Path) -> None:
    from voicewatch.bank import SpeakerBank

    other = tmp_path / "other.safetensors"
    bank = SpeakerBank("0123456789abcdef", 64)
    bank.enroll("x", torch.eye(64)[:1])
    bank.save(other)
    result = run_cli("scan", clips()[0], "--bank", str(other))
    assert result.returncode == 2 and "re-enroll" in result.stderr


def test_scan_with_workers_prints_the_segments_one_process_prints(tmp_path: Path) -> None:
    copy = tmp_path / "again.flac"
    copy.write_bytes(Path(DEMO_RECORDING).read_bytes())
    alone = run_cli("scan", str(DEMO_RECORDING), str(copy), "--json")
    shared = run_cli("scan", str(DEMO_RECORDING), str(copy), "--json", "--workers", "2")
    assert alone.returncode == 0 and shared.returncode == 0, shared.stderr
    key = lambda line: {k: v for k, v in json.loads(line).items() if k not in ("peak", "mean")}  # noqa: E731
    assert [key(line) for line in shared.stdout.splitlines()] == [key(line) for line in alone.stdout.splitlines()]
    assert alone.stdout.count("again") > 0
    refused = run_cli("scan", str(DEMO_RECORDING), "--workers", "0")
    assert refused.returncode == 2 and "1 or more" in refused.stderr
