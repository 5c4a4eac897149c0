"""Every command, given bad input, ends with one line on stderr and a non-zero exit, never a traceback.

Bad input: missing or unreadable files, garbage where a bank, config, log or recording belongs,
endpoints without a scheme, cores that do not answer, numbers that are not numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon_harness import run_cli
from voicewatch.shipped import DEMO_ENROLL

CLIP = str(sorted((DEMO_ENROLL / "alice").iterdir())[0])
ERRORS = "missing.flac", "garbage.bin", "garbage.yaml", "folder", "plain-file"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    (folder / "garbage.bin").write_bytes(b"\x00\xffnot what you think" * 50)
    (folder / "garbage.yaml").write_text("ingest: [unclosed\n  - : {\n")
    (folder / "wrong-value.yaml").write_text("ingest: {endpoint: /tmp/no-scheme}\n")
    (folder / "no-plugin.yaml").write_text("plugin: nosuch\nargs: []\n")
    (folder / "folder").mkdir()
    (folder / "plain-file").write_text("a file where a folder belongs\n")
    return folder


CASES = [
    ["run", "-c", "{dir}/missing.yaml"],
    ["run", "-c", "{dir}/folder"],
    ["run", "-c", "{dir}/garbage.yaml"],
    ["run", "-c", "{dir}/wrong-value.yaml"],
    ["scan", "{dir}/missing.flac"],
    ["scan", "{dir}/garbage.bin"],
    ["scan", CLIP, "--bank", "{dir}/garbage.bin"],
    ["scan", CLIP, "--model", "{dir}/missing.safetensors"],
    ["scan", CLIP, "--pid", "abc"],
    ["replay", "{dir}/missing.flac"],
    ["replay", CLIP, "--connect", "{dir}/ingest"],
    ["replay", CLIP, "--speed", "fast"],
    ["replay", CLIP, "--chunk-ms", "-5"],
    ["tail", "--connect", "{dir}/events"],
    ["tail", "--connect", "tcp://127.0.0.1"],
    ["tail", "--since", "abc"],
    ["tail", "--since", "3", "--log", "{dir}/missing.sqlite"],
    ["enroll", "x", "{dir}/missing.flac", "--bank", "{dir}/new.safetensors"],
    ["enroll", "x", "{dir}/garbage.bin", "--bank", "{dir}/new.safetensors"],
    ["enroll", "x", CLIP, "--bank", "{dir}/garbage.bin"],
    ["enroll", "x", CLIP, "--bank", "{dir}/new.safetensors", "--min-speech", "-5"],
    ["enroll", "x", CLIP, "--bank", "{dir}/new.safetensors", "--threshold", "nan"],
    ["speakers", "--bank", "{dir}/missing.safetensors"],
    ["speakers", "--bank", "{dir}/garbage.bin"],
    ["speakers", "--connect", "{dir}/control"],
    ["speakers", "--set-threshold", "x=abc"],
    ["speakers", "--connect", "ipc://{dir}/nobody-here", "--timeout", "0.3"],
    ["status", "--connect", "localhost:5557"],
    ["status", "--connect", "ipc://{dir}/nobody-here", "--timeout", "0.3"],
    ["status", "--timeout", "0"],
    ["status", "--curve-server-key", "{dir}/missing.key"],
    ["status", "--curve-server-key", "{dir}/missing.key", "--curve-client-key", "{dir}/missing.key_secret",
     "--connect", "ipc://{dir}/nobody-here", "--timeout", "0.3"],
    ["clip", "20261201-180312-7", "--connect", "ipc://{dir}/nobody-here", "--timeout", "0.3"],
    ["review", "undo", "abc"],
    ["review", "20261201-180312-7", "maybe"],
    ["review", "list", "--limit", "many"],
    ["keys", "{dir}/plain-file", "desk"],
    ["export", "--log", "{dir}/missing.sqlite"],
    ["export", "--log", "{dir}/garbage.bin"],
    ["export", "--log", "{dir}/garbage.bin", "--start", "abc"],
    ["bench", "--frame-ms", "abc"],
    ["demo", "--speed", "abc"],
    ["demo", "--web", "abc"],
    ["source", "nosuch"],
    ["source", "replay", "{dir}/missing.flac"],
    ["source", "live", "--connect", "{dir}/ingest"],
    ["source", "dvb", "{dir}/missing.ts", "--connect", "nowhere"],
    ["source-config", "{dir}/missing.yaml"],
    ["source-config", "{dir}/garbage.yaml"],
    ["source-config", "{dir}/no-plugin.yaml"],
    ["train", "--corpus", "{dir}/missing", "--out", "{dir}/model.safetensors"],
    ["train", "--corpus", "{dir}/folder", "--out", "{dir}/model.safetensors", "--steps", "abc"],
    ["pretrain", "--corpus", "{dir}/missing", "--out", "{dir}/pre.safetensors"],
    ["calibrate", "{dir}/missing.safetensors", "--corpus", "{dir}/missing", "--out", "{dir}/c.safetensors"],
    ["fuse", "{dir}/missing.safetensors", "--corpus", "{dir}/missing", "--out", "{dir}/f.safetensors"],
    ["eval", "--corpus", "{dir}/missing"],
    ["web", "-c", "{dir}/missing.yaml"],
    ["web", "--port", "abc"],
    ["report", "--since", "the day before"],
    ["report", "--since", "24h", "--html", "--log", "{dir}/missing.sqlite"],
]


@pytest.mark.parametrize("args", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_ends_in_one_line_and_a_non_zero_exit(place: Path, args: list[str]) -> None:
    result = run_cli(*[a.format(dir=place) for a in args], timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("voicewatch "), result.stderr
    assert "error" in lines[0], lines[0]
