"""The DVB source with real MPEG-TS files made here by PyAV: MP2 and AAC tracks, corruption, PTS jumps,
HTTP serving — decoded by `voicewatch source dvb` into a real core."""

from __future__ import annotations

import fractions
import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torchaudio

from daemon_harness import Daemon, demo_audio, demo_truth, run_cli
from voicewatch.plugins.dvb import PtsClock
from voicewatch.scan import segments

HOP = 1.0
TOLERANCE = HOP + 0.2  # codec delay and frame granularity on top of one hop


def make_ts(path: Path, jump_at_s: float | None = None, jump_s: float = 100.0, start_pts_s: float = 10.0) -> Path:
    """The demo recording at 48 kHz stereo in a TS: MP2 (PID 256, ita) and AAC (PID 257, deu)."""
    audio, rate = demo_audio()
    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 48000).numpy()
    stereo = np.stack([wave, wave]).astype(np.float32)
    out = av.open(str(path), "w", format="mpegts")
    mp2 = out.add_stream("mp2", rate=48000, layout="stereo")
    mp2.bit_rate = 192000
    mp2.metadata["language"] = "ita"
    aac = out.add_stream("aac", rate=48000, layout="stereo")
    aac.metadata["language"] = "deu"
    resamplers = {s: av.AudioResampler(format=s.codec_context.format.name, layout="stereo", rate=48000) for s in (mp2, aac)}
    step = 1152
    for start in range(0, stereo.shape[1] - step, step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start:start + step]), format="fltp",
                                           layout="stereo")
        offset = start / 48000 + start_pts_s + (jump_s if jump_at_s is not None and start / 48000 >= jump_at_s else 0)
        frame.sample_rate, frame.time_base, frame.pts = 48000, fractions.Fraction(1, 48000), round(offset * 48000)
        for stream in (mp2, aac):
            for resampled in resamplers[stream].resample(frame):
                for packet in stream.encode(resampled):
                    out.mux(packet)
    for stream in (mp2, aac):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()
    return path


@pytest.fixture(scope="module")
def ts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ts(tmp_path_factory.mktemp("ts") / "demo.ts")


def source(core: Daemon, url: str, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli("source", "dvb", url, "--connect", core.ingest, *extra, timeout=timeout)


def alice_spans(events, stream: str) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in segments(events) if s.stream == stream and s.speaker == "alice"]


def assert_matches_truth(found: list[tuple[float, float]], offset: float = 0.0) -> None:
    truth = [(t["start"] + offset, t["end"] + offset) for t in demo_truth() if t["speaker"] == "alice"]
    assert len(found) == len(truth), f"found {found}, truth {truth}"
    for (fs, fe), (ts, te) in zip(found, truth, strict=True):
        assert abs(fs - ts) <= TOLERANCE and abs(fe - te) <= TOLERANCE, f"found {(fs, fe)} for {(ts, te)}"


@pytest.fixture
def core(tmp_path: Path):
    daemon = Daemon(tmp_path)
    yield daemon
    if daemon.process.poll() is None:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_an_mp2_transport_stream_through_the_dvb_source_finds_the_true_segments(core: Daemon, ts_file: Path) -> None:
    result = source(core, str(ts_file), "--stream", "tv")
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("tv")
    assert_matches_truth(alice_spans(core.received, "tv"), offset=10.0)  # the TS clock starts at PTS 10 s


def test_the_aac_track_is_chosen_by_language(core: Daemon, ts_file: Path) -> None:
    result = source(core, str(ts_file), "--stream", "radio", "--language", "deu")
    assert result.returncode == 0, result.stderr
    assert "aac" in result.stderr
    core.wait_for_eos("radio")
    assert_matches_truth(alice_spans(core.received, "radio"), offset=10.0)


def test_scan_of_the_same_transport_stream_finds_the_same_voice(ts_file: Path) -> None:
    result = run_cli("scan", str(ts_file), "--stream", "tv", "--json")
    assert result.returncode == 0, result.stderr
    import json

    found = [(s["start"], s["end"]) for s in map(json.loads, result.stdout.splitlines()) if s["speaker"] == "alice"]
    assert_matches_truth(found)  # scan's clock starts at the file's first sample


def test_a_pts_jump_becomes_a_gap_and_detection_goes_on(core: Daemon, tmp_path: Path) -> None:
    jumpy = make_ts(tmp_path / "jump.ts", jump_at_s=30.0, jump_s=100.0)
    result = source(core, str(jumpy), "--stream", "cut")
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("cut")
    gaps = [e for e in core.events_of("cut") if e.type == "gap"]
    assert len(gaps) == 1 and gaps[0].reason == "seq_gap" and gaps[0].end - gaps[0].start == pytest.approx(100, abs=0.2)
    later = [s for s in alice_spans(core.received, "cut") if s[0] > 100]
    assert later, "detection must go on after the jump"


def test_corrupt_packets_are_skipped_and_counted_never_fatal(core: Daemon, ts_file: Path, tmp_path: Path) -> None:
    data = bytearray(ts_file.read_bytes())
    rng = np.random.default_rng(3)
    for packet in rng.choice(len(data) // 188, size=40, replace=False):
        start = int(packet) * 188 + 4
        data[start:start + 184] = rng.integers(0, 256, 184, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.ts"
    broken.write_bytes(bytes(data))
    result = source(core, str(broken), "--stream", "noisy")
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("noisy")
    assert "dvb source done" in result.stderr
    assert len(alice_spans(core.received, "noisy")) >= 2


def test_a_transport_stream_served_over_http_is_decoded(core: Daemon, ts_file: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ts_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{ts_file.name}"
        result = source(core, url, "--stream", "web", "--retries", "0")
    finally:
        server.shutdown()
    assert result.returncode == 1 and "giving up" in result.stderr  # a live URL that ends is a failure
    core.wait_for_eos("web")
    assert_matches_truth(alice_spans(core.received, "web"), offset=10.0)


def test_an_unreachable_url_is_retried_with_backoff_then_given_up(core: Daemon) -> None:
    result = source(core, "http://127.0.0.1:1/none.ts", "--retries", "2", timeout=120)
    assert result.returncode == 1
    assert "giving up" in result.stderr and result.stderr.count("reconnecting") == 2


def test_a_missing_file_is_a_clear_error(core: Daemon, tmp_path: Path) -> None:
    result = source(core, str(tmp_path / "none.ts"))
    assert result.returncode == 2 and "none.ts" in result.stderr and "Traceback" not in result.stderr


def test_missing_pyav_says_how_to_install_it(tmp_path: Path) -> None:
    code = "import sys; sys.modules['av'] = None; from voicewatch.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "source", "dvb", "x.ts"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "pip install 'voicewatch[dvb]'" in result.stderr


def test_pts_unwraps_across_the_33_bit_wrap() -> None:
    clock = PtsClock()
    near_end = (1 << 33) - 90000
    assert clock.seconds(near_end) == pytest.approx(near_end / 90000)
    assert clock.seconds(45000) == pytest.approx(((1 << 33) + 45000) / 90000)  # wrapped: keeps counting up


def test_a_source_described_in_yaml_runs_like_the_command_line(core: Daemon, ts_file: Path, tmp_path: Path) -> None:
    spec = tmp_path / "ch9.yaml"
    spec.write_text(f"plugin: dvb\nargs: ['{ts_file}', '--stream', 'ch9', '--connect', '{core.ingest}']\n")
    result = run_cli("source-config", str(spec))
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("ch9")
    assert_matches_truth(alice_spans(core.received, "ch9"), offset=10.0)
    spec.write_text("plugin: [not, a, name]\n")
    bad = run_cli("source-config", str(spec))
    assert bad.returncode == 2 and "plugin: NAME" in bad.stderr
