"""Detector: positive/negative windows → start / update / end with hysteresis and exact times."""

from __future__ import annotations

import numpy as np

from voicewatch.config import DetectorConfig
from voicewatch.detector import Detector, central_hop_edge, positive_windows
from voicewatch.windows import Window


def run(pattern: str, config: DetectorConfig = DetectorConfig(), stream: str = "s", speakers=("alice",),
        wall: float | None = None, hop: float = 1.0) -> list[tuple]:
    """`pattern`: one character per 2 s window (`hop` apart): `+` positive, `-` negative; scores 0.9 / 0.1."""
    detector = Detector(config, hop)
    events = []
    for index, mark in enumerate(pattern):
        start = index * hop
        window = Window(stream, 16000, start, start + 2.0, None if wall is None else wall + start, np.zeros(1))
        score = np.array([0.9 if mark == "+" else 0.1] * len(speakers))
        events += detector.observe(window, list(speakers), score, score > 0.5)
    events += detector.close_stream(stream)
    return [(e.type, e.speaker, e.start, e.end) for e in events]


def test_a_run_of_positive_windows_starts_updates_and_ends_with_the_central_hop_of_its_last_window() -> None:
    # windows [1, 3], [2, 4], [3, 5]: their central hops [1.5, 2.5], [2.5, 3.5], [3.5, 4.5]
    assert run("-+++--") == [("start", "alice", 1.5, 2.5), ("update", "alice", 1.5, 3.5),
                             ("update", "alice", 1.5, 4.5), ("end", "alice", 1.5, 4.5)]


def test_a_segment_spans_its_windows_central_hops_whatever_the_hop() -> None:
    assert run("-++--", hop=0.5)[-1] == ("end", "alice", 0.5 + 0.75, 1.0 + 1.25)  # 2 s windows, 0.75 s given up each side
    assert run("-++--", hop=2.0)[-1] == ("end", "alice", 2.0, 6.0)  # windows that do not overlap are kept whole
    _, _, start, end = run("+" * 10 + "--")[-1]
    assert end - start == 10 * 1.0  # n windows, n hops: the central hops of consecutive windows tile the stream


def test_one_negative_window_is_tolerated_with_close_windows_2() -> None:
    events = run("++-++--")
    assert events[-1] == ("end", "alice", 0.5, 5.5) and [e[0] for e in events].count("start") == 1


def test_close_windows_1_ends_at_the_first_negative_window() -> None:
    events = run("++-++--", DetectorConfig(close_windows=1))
    assert [e for e in events if e[0] == "end"] == [("end", "alice", 0.5, 2.5), ("end", "alice", 3.5, 5.5)]


def test_open_windows_2_needs_two_positive_windows() -> None:
    assert run("+--+--", DetectorConfig(open_windows=2, close_windows=1)) == []
    assert run("++--", DetectorConfig(open_windows=2, close_windows=1))[0] == ("start", "alice", 0.5, 2.5)


def test_runs_shorter_than_min_segment_are_dropped_silently() -> None:
    # the run's span from its first window's start to its last window's end: one 2 s window, then two (3 s)
    assert run("+--", DetectorConfig(min_segment_s=3.0)) == []
    assert run("++--", DetectorConfig(min_segment_s=3.0))[0] == ("start", "alice", 0.5, 2.5)


def test_min_segment_is_measured_on_whole_windows_so_the_published_span_is_one_hop_less_with_the_defaults() -> None:
    config = DetectorConfig()
    assert config.min_segment_s == 2.0
    assert run("+--", config) == [("start", "alice", 0.5, 1.5), ("end", "alice", 0.5, 1.5)]  # one 2 s window: 1 s
    assert run("+--", DetectorConfig(min_segment_s=2.5)) == []  # its 2 s of whole window fall short


def test_closing_a_stream_ends_its_open_segments() -> None:
    assert run("++")[-1] == ("end", "alice", 0.5, 2.5)


def test_peak_and_mean_scores_and_wall_clock_are_carried() -> None:
    detector = Detector(DetectorConfig(), 1.0)
    events = []
    for index, score in enumerate([0.8, 0.9, 0.7]):
        window = Window("s", 16000, float(index), index + 2.0, 1000.0 + index, np.zeros(1))
        events += detector.observe(window, ["a"], np.array([score]), np.array([True]))
    end = detector.close_stream("s")[0]
    assert (end.peak, end.mean) == (0.9, 0.8) and (end.wall_start, end.wall_end) == (1000.5, 1003.5)
    # what the bench adds back to measure latency from the last window's end (1002 + 2 s)
    assert end.wall_end + central_hop_edge(2.0, 1.0) == 1004.0


def test_streams_and_speakers_never_mix() -> None:
    detector = Detector(DetectorConfig(close_windows=1), 1.0)
    events = []
    for index in range(3):
        for stream, scores in (("one", [0.9, 0.1]), ("two", [0.1, 0.9])):
            window = Window(stream, 16000, float(index), index + 2.0, None, np.zeros(1))
            events += detector.observe(window, ["a", "b"], np.array(scores), np.array(scores) > 0.5)
    events += detector.close_all()
    assert {(e.stream, e.speaker) for e in events} == {("one", "a"), ("two", "b")}


def test_a_window_that_passes_several_speakers_names_the_one_it_passes_by_the_widest_margin() -> None:
    scores = np.array([[0.875, 0.9375, 0.625], [0.875, 0.75, 0.625], [0.5, 0.625, 0.625]], dtype=np.float32)
    thresholds = np.array([0.75, 0.875, 0.5], dtype=np.float32)  # margins of row 0: .125 .0625 .125
    levels = np.full(3, -20.0, dtype=np.float32)
    positive = positive_windows(scores, thresholds, levels, DetectorConfig())
    assert positive.tolist() == [[True, False, True], [True, False, True], [False, False, True]]  # ties keep both
    everyone = positive_windows(scores, thresholds, levels, DetectorConfig(one_speaker_per_window=False))
    assert everyone.tolist() == [[True, True, True], [True, False, True], [False, False, True]]


def test_near_silent_windows_name_no_one() -> None:
    scores, thresholds = np.array([[0.9, 0.9]], dtype=np.float32), np.array([0.7, 0.7], dtype=np.float32)
    assert not positive_windows(scores, thresholds, np.array([-50.0]), DetectorConfig()).any()
    assert positive_windows(scores, thresholds, np.array([-50.0]), DetectorConfig(min_level_dbfs=None)).all()
