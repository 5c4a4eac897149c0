"""Configuration: the shipped file is the defaults; every bad value names its key, its value and the way out."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicewatch.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_config_yaml_is_exactly_the_built_in_defaults() -> None:
    assert load_config(REPO / "config.yaml") == Config()


@pytest.mark.parametrize(("text", "needle"), [
    ("ingest: {endpoint: 'http://x'}", "ingest.endpoint"),
    ("windows: {hop_s: 3.0}", "windows.hop_s"),
    ("windows: {length_s: 60}", "windows.length_s"),
    ("bank: {threshold: 1.5}", "bank.threshold"),
    ("bank: {threshold: 'high'}", "bank.threshold"),
    ("detector: {open_windows: 0}", "detector.open_windows"),
    ("detector: {close_windows: 2.5}", "detector.close_windows"),
    ("detector: {one_speaker_per_window: maybe}", "detector.one_speaker_per_window"),
    ("ingest: {max_streams: true}", "ingest.max_streams"),
    ("ingest: {max_frame_bytes: 10}", "ingest.max_frame_bytes"),
    ("model: {device: tpu}", "model.device"),
    ("metrics: {port: 70000}", "metrics.port"),
    ("processing: {max_lag_s: -1}", "processing.max_lag_s"),
    ("processing: {threads: -1}", "processing.threads"),
    ("events: {heartbeat_s: 0}", "events.heartbeat_s"),
    ("log_level: LOUD", "log_level"),
    ("windos: {hop_s: 1.0}", "windos"),
    ("detector: {open_window: 2}", "detector.open_window"),
    ("windows: [1, 2]", "windows"),
    ("security: {curve: true}", "security.secret_key"),
    ("clips: {max_s: 1}", "clips.max_s"),
    ("clips: {queue: 0}", "clips.queue"),
    ("clips: {max_mb: 0}", "clips.max_mb"),
    ("review: {max_exemplars: 2}", "review.max_exemplars"),
    ("web: {token: short}", "web.token"),
    ("web: {port: -1}", "web.port"),
])
def test_an_invalid_value_names_the_key_and_the_value(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert needle in str(error.value)


def test_invalid_yaml_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("windows: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_an_empty_file_means_all_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_integers_are_accepted_where_floats_are_expected(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("windows: {length_s: 2, hop_s: 1}\n")
    assert load_config(path).windows.hop_s == 1.0
