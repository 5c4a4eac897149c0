"""Ingest: every bad frame is dropped alone with a counted reason; good frames become windows and breaks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicewatch.config import Config, IngestConfig
from voicewatch.ingest import Ingest, SourceNotice, StreamBreak
from voicewatch.protocol import FrameHeader, encode_frame
from voicewatch.sourceframes import FrameEncoder
from voicewatch.windows import Window

RATE = 16000


def clean_frames(seconds: float = 5.0, chunk: int = 1600, stream: str = "clean") -> list[list[bytes]]:
    samples = (np.sin(np.arange(int(seconds * RATE)) / 7) * 8000).astype("<i2").reshape(-1, 1)
    encoder = FrameEncoder(stream, RATE, 1, "s16le")
    return [encoder.encode(samples[i:i + chunk]) for i in range(0, len(samples), chunk)]


def windows_of(items) -> list[tuple[float, float, bytes]]:
    return [(w.start, w.end, w.samples.tobytes()) for w in items if isinstance(w, Window)]


def ingest(**limits) -> Ingest:
    config = Config()
    return Ingest(IngestConfig(**limits) if limits else config.ingest, config.windows)


def header(**fields) -> bytes:
    base = {"v": 1, "seq": 0, "rate": RATE, "channels": 1, "format": "s16le", "pts": 0.0}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


BAD_FRAMES = {
    "bad_parts": [[b"s1", header()], [b"s1", header(), b"", b""]],
    "too_large": [[b"s1", header(), b"\x00" * 9000]],
    "bad_stream_id": [[b"\xff\xfe", header(), b""], [b"a.b", header(), b""], [b"x" * 65, header(), b""], [b"", header(), b""],
                      [b"ch3\n", header(), b""], [b"x" * 64 + b"\n", header(), b""]],
    "bad_json": [[b"s1", b"{not json", b""], [b"s1", b"[1, 2]", b""], [b"s1", b"\xff", b""],
                 [b"s1", header().decode().encode("utf-16"), b""], [b"s1", b"\xef\xbb\xbf" + header(), b""],
                 [b"s1", b'{"v":1,"seq":0,"rate":16000,"channels":1,"format":"s16le","pts":NaN}', b""],
                 [b"s1", b'{"v":1,"seq":0,"rate":16000,"channels":1,"format":"s16le","pts":-Infinity}', b""],
                 [b"s1", b'{"v":1,"seq":0,"seq":1,"rate":16000,"channels":1,"format":"s16le","pts":0}', b""]],
    "nested_header": [[b"s1", b"[" * 2000, b""], [b"s1", b"{" * 2000, b""], [b"s1", header(extra=[1]), b""],
                      [b"s1", header(extra={"x": 1}), b""], [b"s1", header(seq=[0]), b""]],
    "header_too_large": [[b"s1", header(note="x" * 5000), b""]],
    "bad_version": [[b"s1", header(v=2), b""], [b"s1", header(v=...), b""], [b"s1", header(v=True), b""],
                    [b"s1", header(v=1.0), b""]],
    "bad_field": [[b"s1", header(seq=...), b""], [b"s1", header(seq="1"), b""], [b"s1", header(rate=True), b""],
                  [b"s1", header(seq=-1), b""], [b"s1", header(pts="now"), b""], [b"s1", header(wall="x"), b""],
                  [b"s1", header(eos=1), b""], [b"s1", header(status="on_fire"), b""],
                  [b"s1", header(pts=10**400), b""], [b"s1", header(wall=-(10**400)), b""],
                  [b"s1", b'{"v":1,"seq":0,"rate":16000,"channels":1,"format":"s16le","pts":1e400}', b""]],
    "bad_rate": [[b"s1", header(rate=7999), b""], [b"s1", header(rate=96000), b""]],
    "bad_channels": [[b"s1", header(channels=0), b""], [b"s1", header(channels=9), b""]],
    "bad_format": [[b"s1", header(format="u8"), b""], [b"s1", header(format="S16LE"), b""]],
    "bad_length": [[b"s1", header(), b"\x00" * 3], [b"s1", header(channels=2), b"\x00" * 6],
                   [b"s1", header(format="f32le"), b"\x00" * 6]],
    "non_finite": [[b"s1", header(format="f32le"), np.array([0.1, np.nan], "<f4").tobytes()],
                   [b"s1", header(format="f32le"), np.array([np.inf], "<f4").tobytes()]],
}


@pytest.mark.parametrize(("reason", "frame"), [(r, f) for r, frames in BAD_FRAMES.items() for f in frames])
def test_each_bad_frame_is_dropped_counted_and_leaves_other_streams_untouched(reason: str, frame: list[bytes]) -> None:
    alone = ingest(max_frame_bytes=8192)
    expected = [item for f in clean_frames() for item in alone.accept(f)]
    mixed = ingest(max_frame_bytes=8192)
    items = []
    for index, clean in enumerate(clean_frames()):
        items += mixed.accept(clean)
        if index == 10:
            assert mixed.accept(frame) == []
    assert dict(mixed.dropped) == {reason: 1}
    assert windows_of(items) == windows_of(expected)


def test_unknown_header_fields_are_ignored() -> None:
    table = ingest()
    frame = [b"s1", header(source="dvb-2", note="x" * 1000, flag=True, level=-3.5, none=None), bytes(2 * RATE)]
    table.accept(frame)
    assert table.frames == 1 and not table.dropped


def test_seq_going_backwards_or_repeating_is_dropped() -> None:
    table = ingest()
    frames = clean_frames(1.0)
    for frame in frames[:5]:
        table.accept(frame)
    assert table.accept(frames[4]) == [] and table.accept(frames[2]) == []
    assert table.dropped == {"seq_backwards": 2}
    assert table.next_seq["clean"] == 5


def test_a_dropped_frame_does_not_use_up_its_seq() -> None:
    table = ingest()
    frames = clean_frames(1.0)
    for frame in frames[:5]:
        table.accept(frame)
    stream, good_header, payload = frames[5]
    assert table.accept([stream, good_header, payload[:-1]]) == [] and table.dropped == {"bad_length": 1}  # seq 5, torn
    items = table.accept(frames[5])  # seq 5 again, whole: measured against seq 4, the last accepted frame
    assert table.dropped == {"bad_length": 1} and not [i for i in items if isinstance(i, StreamBreak)]
    assert table.next_seq["clean"] == 6


def test_new_streams_beyond_the_limit_are_dropped_but_known_ones_go_on() -> None:
    table = ingest(max_streams=2)
    for name in ("a", "b"):
        table.accept(clean_frames(0.2, stream=name)[0])
    assert table.accept(clean_frames(0.2, stream="c")[0]) == []
    assert table.dropped == {"too_many_streams": 1}
    assert table.accept(clean_frames(0.2, stream="a")[1]) == [] and table.dropped == {"too_many_streams": 1}


def test_a_seq_gap_ends_the_run_and_windows_restart_at_the_new_pts() -> None:
    table = ingest()
    samples = np.zeros((RATE // 10, 1), dtype="<i2")
    items = []
    for seq in range(30):  # 3 s
        items += table.accept(encode_frame("s", FrameHeader(seq, RATE, 1, "s16le", seq * 0.1), samples.tobytes()))
    for seq in range(40, 70):  # seq 30..39 lost: 1 s missing
        items += table.accept(encode_frame("s", FrameHeader(seq, RATE, 1, "s16le", seq * 0.1), samples.tobytes()))
    breaks = [i for i in items if isinstance(i, StreamBreak)]
    assert breaks == [StreamBreak("s", "seq_gap", 3.0, 4.0, None)]
    assert [w.start for w in items if isinstance(w, Window)] == [0.0, 1.0, 4.0, 5.0]


def test_a_rate_change_is_a_break_and_the_new_rate_is_used() -> None:
    table = ingest()
    items = table.accept(encode_frame("s", FrameHeader(0, RATE, 1, "s16le", 0.0), bytes(2 * RATE * 3)))
    items += table.accept(encode_frame("s", FrameHeader(1, 8000, 1, "s16le", 3.0), bytes(2 * 8000 * 2)))
    assert [i.reason for i in items if isinstance(i, StreamBreak)] == ["rate_change"]
    assert [(w.rate, w.start) for w in items if isinstance(w, Window)] == [(RATE, 0.0), (RATE, 1.0), (8000, 3.0)]


def test_end_of_stream_closes_the_stream_and_its_id_may_start_again() -> None:
    table = ingest()
    frames = clean_frames(2.5)
    for frame in frames[:-1]:
        table.accept(frame)
    last = encode_frame("clean", FrameHeader(len(frames) - 1, RATE, 1, "s16le", 2.4, eos=True), frames[-1][2])
    items = table.accept(last)
    assert items[-1] == StreamBreak("clean", "eos", 2.5, 2.5, None)
    assert "clean" not in table.buffers
    assert table.accept(clean_frames(0.2)[0]) == [] and not table.dropped  # seq 0 again: a new stream


def test_stereo_is_averaged_to_mono_the_same_for_s16le_and_f32le_to_half_an_input_step() -> None:
    """s16le stays int16 in the stream's buffer: several channels' mean is rounded to the nearest step."""
    left = np.arange(-8000, 8000, dtype=np.int16)
    right = (left // 3).astype(np.int16)
    s16 = np.stack([left, right], axis=1).astype("<i2")
    f32 = (s16 / 32768).astype("<f4")
    a = ingest().accept(encode_frame("s", FrameHeader(0, 8000, 2, "s16le", 0.0), s16.tobytes()))
    b = ingest().accept(encode_frame("s", FrameHeader(0, 8000, 2, "f32le", 0.0), f32.tobytes()))
    mean = (left.astype(np.float64) + right) / 2
    np.testing.assert_array_equal(a[0].samples, np.floor(mean[:16000] + 0.5).astype(np.float32) / 32768)
    np.testing.assert_array_equal(b[0].samples, (mean[:16000] / 32768).astype(np.float32))
    assert np.abs(a[0].samples - b[0].samples).max() <= 0.5 / 32768


def test_mono_s16le_windows_are_its_exact_samples_over_32768() -> None:
    samples = np.random.default_rng(1).integers(-32768, 32768, 24000).astype("<i2")
    items = ingest().accept(encode_frame("s", FrameHeader(0, 8000, 1, "s16le", 0.0), samples.tobytes()))
    assert items[0].samples.dtype == np.float32
    np.testing.assert_array_equal(items[1].samples, samples[8000:24000].astype(np.float32) / 32768)


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
def test_a_frame_is_sound_only_above_minus_60_dbfs_in_either_format(fmt: str) -> None:
    table = ingest()
    for seq, peak in enumerate((32, -33)):  # -60.2 dBFS, then -59.9
        body = np.full((800, 2), peak, "<i2") if fmt == "s16le" else np.full((800, 2), peak / 32768, "<f4")
        table.last_sound["s"] = -1.0
        table.accept(encode_frame("s", FrameHeader(seq, 8000, 2, fmt, seq * 0.1), body.tobytes()))
        assert (table.last_sound["s"] > 0) == (seq == 1)


def test_wall_clock_is_carried_into_windows() -> None:
    table = ingest()
    items = table.accept(encode_frame("s", FrameHeader(0, 8000, 1, "s16le", 5.0, wall=1_800_000_000.0),
                                      bytes(2 * 8000 * 3)))
    assert [(w.start, w.wall_start) for w in items] == [(5.0, 1_800_000_000.0), (6.0, 1_800_000_001.0)]


def test_a_later_wall_time_that_disagrees_moves_the_anchor_without_resetting_windows() -> None:
    """A DVB source learns the broadcast time (TDT) only after its first frames."""
    table = ingest()
    second = bytes(2 * 8000)
    items = table.accept(encode_frame("s", FrameHeader(0, 8000, 1, "s16le", 0.0, wall=1_000.0), second))
    items += table.accept(encode_frame("s", FrameHeader(1, 8000, 1, "s16le", 1.0, wall=1_001.4), second))  # jitter
    items += table.accept(encode_frame("s", FrameHeader(2, 8000, 1, "s16le", 2.0, wall=1_800_000_002.0), second))
    items += table.accept(encode_frame("s", FrameHeader(3, 8000, 1, "s16le", 3.0), second))
    assert not [i for i in items if isinstance(i, StreamBreak)]
    assert [(w.start, w.wall_start) for w in items] == [(0.0, 1_000.0), (1.0, 1_800_000_001.0), (2.0, 1_800_000_002.0)]


def test_a_source_status_becomes_a_notice_and_keeps_the_clock() -> None:
    encoder = FrameEncoder("s", 8000, 1, "s16le")
    table = ingest()
    items = table.accept(encoder.encode(np.zeros((12000, 1), "<i2")))
    items += table.accept(encoder.encode(np.zeros((0, 1), "<i2"), status="reconnecting"))
    items += table.accept(encoder.encode(np.zeros((0, 1), "<i2"), status="recovered"))
    items += table.accept(encoder.encode(np.zeros((12000, 1), "<i2")))
    assert [(i.status, i.time) for i in items if isinstance(i, SourceNotice)] == [("reconnecting", 1.5), ("recovered", 1.5)]
    assert [w.start for w in items if isinstance(w, Window)] == [0.0, 1.0]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.lists(st.lists(st.binary(max_size=40), max_size=4) | st.builds(
    lambda seq, rate, ch, fmt, body: [b"fz", header(seq=seq, rate=rate, channels=ch, format=fmt), body],
    st.integers(-2, 5), st.sampled_from([8000, 16000, 1, 10**9]), st.integers(-1, 9),
    st.sampled_from(["s16le", "f32le", "pcm"]), st.binary(max_size=64)), max_size=30))
def test_random_frames_never_raise_and_never_disturb_a_clean_stream(garbage: list[list[bytes]]) -> None:
    alone = ingest()
    expected = windows_of(item for f in clean_frames(3.0) for item in alone.accept(f))
    table = ingest()
    items = []
    clean = clean_frames(3.0)
    for index, frame in enumerate(clean):
        items += table.accept(frame)
        for junk in garbage[index::len(clean)]:
            table.accept(junk)
    assert windows_of(i for i in items if getattr(i, "stream", None) == "clean") == expected
