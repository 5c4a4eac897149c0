"""`voicewatch report`: a period of the event log per channel and speaker, as HTML or CSV, clips linked."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, run_cli
from voicewatch.control import request
from voicewatch.plugins.replay import replay
from voicewatch.report import parse_when
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Daemon, float]:
    tmp = tmp_path_factory.mktemp("report")
    bank = tmp / "bank.safetensors"
    bank.write_bytes(DEMO_BANK.read_bytes())
    daemon = Daemon(tmp, config={"clips": {"path": str(tmp / "clips")}, "bank": {"path": str(bank)},
                                 "processing": {"max_lag_s": None}}, log_path=tmp / "events.sqlite")
    origin = time.time() - 600
    replay([str(DEMO_RECORDING)], daemon.ingest, ["ch1"], speed=None, wall=origin)
    replay([str(DEMO_RECORDING)], daemon.ingest, ["ch2"], speed=None, wall=origin + 200)
    daemon.wait_for_eos("ch1", "ch2")
    second = [e for e in daemon.events_of("ch2") if e.type == "end"][1]
    request(daemon.control, {"cmd": "review", "id": second.clip, "verdict": "reject", "who": "desk1"})
    yield daemon, origin
    assert daemon.stop() == 0


def test_csv_has_one_row_per_segment_with_its_clip_and_review(monitored: tuple[Daemon, float]) -> None:
    daemon, origin = monitored
    result = run_cli("report", "--since", "1h", "--csv", "-c", str(daemon.config))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["channel"], r["speaker"]) for r in rows] == [("ch1", "alice")] * 3 + [("ch2", "alice")] * 3
    assert [float(r["seconds"]) for r in rows] == [14.0, 12.0, 11.0] * 2
    assert all(r["clip"].startswith("file://") and r["clip"].endswith(".flac") and Path(r["clip"][7:]).exists() for r in rows)
    assert [r["review"] for r in rows] == ["", "", "", "", "rejected", ""]
    later = run_cli("report", "--since", str(origin + 150), "--csv", "-c", str(daemon.config))
    assert [r["channel"] for r in csv.DictReader(io.StringIO(later.stdout))] == ["ch2"] * 3


def test_html_sums_airtime_per_channel_and_speaker(monitored: tuple[Daemon, float], tmp_path: Path) -> None:
    daemon, _origin = monitored
    out = tmp_path / "report.html"
    result = run_cli("report", "--since", "1d", "--html", "-c", str(daemon.config), "-o", str(out),
                     "--clip-link", "http://127.0.0.1:8090/api/clips/{id}")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert "<td>ch1</td><td>alice</td><td>3</td><td>0:00:37</td><td>3</td>" in page
    assert page.count('href="http://127.0.0.1:8090/api/clips/') == 6 and "<script" not in page


def test_a_period_is_given_as_an_age_a_date_or_epoch_seconds() -> None:
    now = 1_800_000_000.0
    assert parse_when("24h", now) == now - 86400 and parse_when("90m", now) == now - 5400
    assert parse_when("1800000000", now) == now
    assert parse_when("2026-12-01T00:00+00:00") == 1796083200.0
    with pytest.raises(ValueError, match="not a time"):
        parse_when("yesterday")


def test_a_report_without_an_event_log_says_what_is_missing(tmp_path: Path) -> None:
    result = run_cli("report", "--since", "1h", "--csv")
    assert result.returncode == 2 and "--log" in result.stderr
    missing = run_cli("report", "--since", "1h", "--csv", "--log", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
