"""A short soak of the real core: a few real-time streams over ZeroMQ until everything time-bounded has
filled and as long again; the core's RSS levels off and it opens no more files."""

from __future__ import annotations

import json

from daemon_harness import run_cli
from voicewatch.bank import SpeakerBank
from voicewatch.shipped import DEMO_BANK

STREAMS, HISTORY_S = 4, 8.0
DIM = SpeakerBank.load(DEMO_BANK).dim  # the shipped model's embedding


def test_rss_levels_off_and_fds_stay_flat_once_the_history_has_filled() -> None:
    result = run_cli("bench", "--soak", "0.6", "--streams", str(STREAMS), "--history-s", str(HISTORY_S),
                     "--soak-every", "2", "--senders", "1", "--speakers", "5", "--exemplars", "2", "--json",
                     timeout=240)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["core_exit"] == 0 and report["filled"] and report["filled_after_s"] == HISTORY_S + 2.0
    assert report["windows_per_s"] > 0
    history = [sample["memory_mib"]["history"] for sample in report["samples"]]
    assert max(history) == round(STREAMS * HISTORY_S * (2 * DIM + 16) / 2**20, 3)  # each stream's whole ring
    assert abs(report["rss_growth_last_half_percent"]) < 2.0, report["samples"]
    low, high = report["fds_last_half"]
    assert high - low <= 1, report["samples"]  # the sampler's own status connection may not be closed yet
