"""Windows come from sample counts: any chunking of the same audio gives the same windows."""

from __future__ import annotations

import numpy as np
import pytest

from voicewatch.windows import WindowBuffer


def cut(samples: np.ndarray, chunk: int, rate: int, pts: float = 0.0) -> list:
    buffer = WindowBuffer("s", rate, 2.0, 1.0, pts, None)
    return [w for start in range(0, len(samples), chunk) for w in buffer.push(samples[start:start + chunk])]


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_two_second_windows_every_second_timed_from_the_first_pts(rate: int) -> None:
    windows = cut(np.zeros(rate * 5, dtype=np.float32), rate // 10, rate, pts=100.0)
    assert [(w.start, w.end) for w in windows] == [(100.0, 102.0), (101.0, 103.0), (102.0, 104.0), (103.0, 105.0)]
    assert all(len(w.samples) == 2 * rate and w.rate == rate for w in windows)


def test_chunk_size_never_changes_the_windows() -> None:
    rate = 16000
    samples = np.random.default_rng(0).standard_normal(rate * 7).astype(np.float32)
    reference = cut(samples, 2 * rate, rate)
    for chunk_s in (0.01, 0.333, 2.0, 0.0625):
        windows = cut(samples, int(chunk_s * rate), rate)
        assert [w.start for w in windows] == [w.start for w in reference]
        for ours, theirs in zip(windows, reference, strict=True):
            np.testing.assert_array_equal(ours.samples, theirs.samples)
    np.testing.assert_array_equal(reference[2].samples, samples[2 * rate: 4 * rate])


def test_the_buffer_is_one_window_allocated_once_however_long_the_stream() -> None:
    rate = 8000
    buffer = WindowBuffer("s", rate, 2.0, 1.0, 0.0, None, np.int16)
    held = buffer._ring
    chunk = np.zeros(rate // 10, dtype=np.int16)
    for _ in range(3000):  # five minutes
        buffer.push(chunk)
    assert buffer._ring is held and buffer.nbytes == 2 * rate * 2  # 2 s of int16
    assert buffer.received == 3000 * len(chunk) and buffer.time == pytest.approx(300.0)


def test_int16_samples_give_the_windows_their_float32_values_would() -> None:
    rate = 8000
    ints = np.random.default_rng(2).integers(-32768, 32768, rate * 6).astype(np.int16)
    as_float = cut(ints.astype(np.float32) / 32768, 700, rate)
    buffer = WindowBuffer("s", rate, 2.0, 1.0, 0.0, None, np.int16)
    as_int = [w for start in range(0, len(ints), 700) for w in buffer.push(ints[start:start + 700])]
    assert len(as_int) == len(as_float) == 5
    for ours, theirs in zip(as_int, as_float, strict=True):
        assert ours.samples.dtype == np.float32
        np.testing.assert_array_equal(ours.samples, theirs.samples)


def test_a_float_frame_after_int16_ones_keeps_every_sample_exact() -> None:
    rate = 8000
    ints = np.arange(-12000, 12000, dtype=np.int16)
    floats = ints.astype(np.float32) / 32768
    buffer = WindowBuffer("s", rate, 2.0, 1.0, 0.0, None, np.int16)
    windows = buffer.push(ints[:10000]) + buffer.push(floats[10000:20000]) + buffer.push(ints[20000:])
    assert buffer._ring.dtype == np.float32
    assert [w.start for w in windows] == [0.0, 1.0]
    np.testing.assert_array_equal(windows[1].samples, floats[8000:24000])


def test_windows_are_read_only_and_later_pushes_do_not_change_them() -> None:
    buffer = WindowBuffer("s", 8000, 2.0, 1.0, 0.0, None)
    first = buffer.push(np.ones(16000, dtype=np.float32))[0]
    for value in (5.0, 6.0, 7.0):  # the buffer is refilled three times over
        buffer.push(np.full(8000, value, dtype=np.float32))
    assert (first.samples == 1.0).all()
    with pytest.raises(ValueError, match="read-only"):
        first.samples[0] = 2.0
