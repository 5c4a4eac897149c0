"""`scan --workers N`: the recordings decoded and featurised in worker processes give the segments one process gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from voicewatch.audiofile import AudioFileError
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.parallelscan import scan_parallel
from voicewatch.scan import scan, segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(device="cpu")


@pytest.fixture(scope="module")
def bank(embedder: Embedder) -> SpeakerBank:
    return SpeakerBank.load(DEMO_BANK, embedder_id=embedder.model_id)


def test_two_workers_find_the_segments_one_process_finds(embedder: Embedder, bank: SpeakerBank,
                                                        tmp_path: Path) -> None:
    paths = [shutil.copy(DEMO_RECORDING, tmp_path / f"take{i}.flac") for i in range(3)]
    streams = [Path(p).stem for p in paths]
    alone = segments(scan(paths, streams, embedder, bank, Config()))
    shared = segments(scan_parallel(paths, streams, embedder, bank, Config(), workers=2))
    assert {s.stream for s in alone} == set(streams)
    assert [(s.stream, s.speaker, s.start, s.end) for s in shared] == [(s.stream, s.speaker, s.start, s.end)
                                                                         for s in alone]
    assert [s.peak for s in shared] == pytest.approx([s.peak for s in alone], abs=1e-4)
    assert [s.mean for s in shared] == pytest.approx([s.mean for s in alone], abs=1e-4)


def test_a_recording_a_worker_cannot_read_fails_the_scan_with_its_name(embedder: Embedder, bank: SpeakerBank,
                                                                      tmp_path: Path) -> None:
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioFileError, match="broken.flac"):
        scan_parallel([DEMO_RECORDING, broken], ["demo", "broken"], embedder, bank, Config(), workers=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_scorer_finds_the_segments_the_cpu_finds(embedder: Embedder, bank: SpeakerBank) -> None:
    on_cuda = Embedder.load(device="cuda")
    alone = segments(scan([DEMO_RECORDING], ["demo"], embedder, bank, Config()))
    for found in (segments(scan([DEMO_RECORDING], ["demo"], on_cuda, bank, Config())),
                  segments(scan_parallel([DEMO_RECORDING], ["demo"], on_cuda, bank, Config(), workers=2))):
        assert [(s.speaker, s.start, s.end) for s in found] == [(s.speaker, s.start, s.end) for s in alone]
        assert [s.peak for s in found] == pytest.approx([s.peak for s in alone], abs=1e-3)
