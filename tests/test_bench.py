"""`voicewatch bench` runs end to end and reports every figure (the numbers themselves are for people: no test
here times anything)."""

from __future__ import annotations

import json

from daemon_harness import run_cli

KEYS = {"realtime_streams", "latency_p50_s", "latency_p99_s", "rss_mb_per_stream", "scan_audio_s_per_s_per_core",
        "unbatched_ratio", "peer_ratio", "device", "machine", "senders",
        "stage_ms_per_window", "batch_windows_mean_at_max", "small_frames"}
STAGES = {"ingest", "resample", "log_mel", "embed", "match", "detect", "publish"}


def test_a_tiny_live_and_offline_run_prints_one_json_line_with_every_figure() -> None:
    result = run_cli("bench", "--quick", "--json", "--step-seconds", "3", "--start-streams", "2", "--max-streams", "2",
                     "--senders", "2", "--speakers", "5", "--exemplars", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert KEYS <= set(report)
    assert report["realtime_streams"] == 2 and report["scan_audio_s_per_s_per_core"] > 0
    assert report["senders"] == 2 and report["machine"]["cpu_cores"] >= 1
    assert report["device"] == ("cuda" if report["machine"]["gpu"] else "cpu")  # the core's own device
    assert STAGES <= set(report["stage_ms_per_window"])
    assert report["small_frames"]["frame_ms"] == 20.0 and report["small_frames"]["streams"] == 1
    held = report["memory_mib_per_stream"]  # one 2 s window of 48 kHz s16le; the history's whole ring or none yet
    assert held["window_buffers"] == round(2 * 48000 * 2 / 2**20, 3) and held["history"] in (0.0, 0.371)


def test_offline_mode_measures_only_scan_and_scan_workers_on_request() -> None:
    result = run_cli("bench", "--offline", "--quick", "--json", "--scan-workers", "2", "--speakers", "5",
                     "--exemplars", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unbatched_ratio"] > 0 and "realtime_streams" not in report
    assert report["scan_workers"]["workers"] == 2 and report["scan_workers"]["audio_s_per_s"] > 0
    assert "steady_audio_s_per_s" in report["scan_workers"]
