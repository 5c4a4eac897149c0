"""The pipeline in-process: the same audio gives the same events however it is cut or batched."""

from __future__ import annotations

import dataclasses

import pytest

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.ingest import Ingest
from voicewatch.pipeline import Pipeline
from voicewatch.scan import scan, segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING
from voicewatch.sourceframes import file_frames


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="module")
def bank(embedder: Embedder) -> SpeakerBank:
    return SpeakerBank.load(DEMO_BANK, embedder_id=embedder.model_id)


def decisions(events):
    return [(e.type, e.stream, e.speaker, e.start, e.end) for e in events]


@pytest.mark.parametrize("chunk_s", [0.01, 0.333, 2.0])
def test_chunk_size_does_not_change_the_events(embedder: Embedder, bank: SpeakerBank, chunk_s: float) -> None:
    reference = scan([DEMO_RECORDING], ["demo"], embedder, bank, Config(), chunk_s=1.0)
    cut = scan([DEMO_RECORDING], ["demo"], embedder, bank, Config(), chunk_s=chunk_s)
    assert decisions(cut) == decisions(reference)
    assert [e.peak for e in cut] == pytest.approx([e.peak for e in reference], abs=1e-4)


def test_one_window_per_tick_gives_the_same_events_as_whole_batches(embedder: Embedder, bank: SpeakerBank) -> None:
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    items = [item for frame in file_frames(DEMO_RECORDING, "demo", 0.1) for item in ingest.accept(frame)]
    batched = Pipeline(embedder, bank, config.detector, config.windows.hop_s).process(items)
    single = Pipeline(embedder, bank, config.detector, config.windows.hop_s)
    one_by_one = [event for item in items for event in single.process([item])]
    assert decisions(one_by_one) == decisions(batched)
    assert [e.peak for e in one_by_one] == pytest.approx([e.peak for e in batched], abs=1e-4)


def test_a_removed_speaker_has_its_open_segments_ended(embedder: Embedder, bank: SpeakerBank) -> None:
    config = Config()
    ingest = Ingest(config.ingest, config.windows)
    pipeline = Pipeline(embedder, bank, config.detector, config.windows.hop_s)
    items = [item for frame in file_frames(DEMO_RECORDING, "demo", 0.1) for item in ingest.accept(frame)]
    position, started = 0, []
    while not started:  # up to the first published segment, which is then open
        started = [e for e in pipeline.process([items[position]]) if e.type == "start"]
        position += 1
    speaker, start = started[0].speaker, started[0].start
    still_open = pipeline.detector.open_segments("demo")
    smaller = SpeakerBank(bank.embedder_id, bank.dim)
    for name in bank.names:
        if name != speaker:
            smaller.enroll(name, bank.exemplars(name))
    ended = pipeline.swap_bank(smaller)
    assert [(e.type, e.speaker, e.start) for e in ended] == [("end", speaker, start)]
    assert pipeline.detector.open_segments("demo") == still_open - 1
    later = pipeline.process(items[position:])
    assert all(e.speaker != speaker for e in later)  # the removed speaker is named no more


def test_detector_settings_change_segments_as_documented(embedder: Embedder, bank: SpeakerBank) -> None:
    strict = dataclasses.replace(Config(), detector=dataclasses.replace(Config().detector, min_segment_s=3600))
    assert segments(scan([DEMO_RECORDING], ["demo"], embedder, bank, strict)) == []


def test_a_voice_enrolled_under_two_names_is_named_once_per_window_unless_configured_otherwise(
        embedder: Embedder, bank: SpeakerBank) -> None:
    twice = SpeakerBank(bank.embedder_id, bank.dim)
    twice.enroll("alice", bank.exemplars("alice"), threshold=bank.threshold("alice"))
    twice.enroll("alice_strict", bank.exemplars("alice"), threshold=bank.threshold("alice") + 0.01)
    found = segments(scan([DEMO_RECORDING], ["demo"], embedder, twice, Config()))
    assert found and {s.speaker for s in found} == {"alice"}  # the wider margin wins every window
    everyone = dataclasses.replace(Config(), detector=dataclasses.replace(Config().detector, one_speaker_per_window=False))
    both = segments(scan([DEMO_RECORDING], ["demo"], embedder, twice, everyone))
    assert {s.speaker for s in both} == {"alice", "alice_strict"}
