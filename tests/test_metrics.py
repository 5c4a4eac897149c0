"""Prometheus metrics of a running core, scraped over HTTP on loopback."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import numpy as np
import zmq

from daemon_harness import Daemon
from voicewatch.metrics import ScoreHistograms
from voicewatch.plugins.replay import replay
from voicewatch.shipped import DEMO_RECORDING


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in metrics"
    return float(match.group(1))


def test_a_core_exposes_counters_histograms_and_per_speaker_scores(tmp_path: Path) -> None:
    core = Daemon(tmp_path, config={"metrics": {"port": 0}})
    try:
        port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", core.stderr).group(1))
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(core.ingest)
        push.send_multipart([b"bad", b"{not json", b""])
        push.close(linger=1000)
        replay([str(DEMO_RECORDING)], core.ingest, ["demo"], speed=None)
        core.wait_for_eos("demo")
        for _ in range(3):
            core.wait_for(lambda e: e.reason == "heartbeat")
        text = scrape(port)
    finally:
        assert core.stop() == 0
    assert value(text, "voicewatch_frames_total") > 0
    assert value(text, 'voicewatch_bad_frames_total{reason="bad_json"}') == 1
    windows = value(text, "voicewatch_windows_total")
    assert windows > 0
    assert value(text, "voicewatch_batch_windows_sum") == windows
    for stage in ("ingest", "resample", "log_mel", "embed", "match", "detect", "publish"):
        assert value(text, f'voicewatch_stage_seconds_count{{stage="{stage}"}}') > 0
    assert re.search(r'voicewatch_window_score_bucket\{le="\+Inf",speaker="\w+"\} ' + f"{windows}", text)
    assert value(text, "voicewatch_bank_speakers") >= 1
    assert value(text, "voicewatch_end_to_end_latency_seconds_count") > 0


def test_score_histograms_count_every_score_in_the_right_bucket() -> None:
    histograms = ScoreHistograms()
    histograms.observe(["a", "b"], np.array([[0.05, 0.95], [0.75, -0.5], [0.72, 0.99]]))
    family = next(iter(histograms.collect()))
    buckets = {(s.labels["speaker"], s.labels.get("le")): s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets[("a", "0.1")] == 1 and buckets[("a", "0.7")] == 1 and buckets[("a", "0.8")] == 3
    assert buckets[("b", "0")] == 1 and buckets[("b", "0.9")] == 1 and buckets[("b", "+Inf")] == 3
    sums = {s.labels["speaker"]: s.value for s in family.samples if s.name.endswith("_sum")}
    assert abs(sums["a"] - 1.52) < 1e-9


def test_docs_metrics_lists_every_metric_the_core_exports_with_its_labels() -> None:
    from voicewatch.metrics import Metrics

    page = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(voicewatch_\w+)` \| \w+ \| ([^|]+) \|", page, re.M)}
    exported = {"voicewatch_window_score": "`speaker`",  # ScoreHistograms, a custom collector
                "voicewatch_clips_total": "`outcome`", "voicewatch_clip_store_bytes": "—"}  # with clips.path only
    for metric in vars(Metrics()).values():
        if hasattr(metric, "_labelnames"):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            exported[name] = ", ".join(f"`{label}`" for label in metric._labelnames) or "—"
    assert len(exported) == 18
    assert {name: rows.get(name, "").strip() for name in exported} == exported
