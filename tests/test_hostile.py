"""Hostile input on both sockets, in-process: grammar-aware fuzzing of ingest frames and control requests.

Every case must be accepted or refused with a documented reason; nothing may raise, log an error, or
change what a clean stream beside it produces.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.control import Controller
from voicewatch.embedder import Embedder
from voicewatch.ingest import Ingest
from voicewatch.service import Core
from voicewatch.shipped import DEMO_BANK
from voicewatch.sourceframes import FrameEncoder
from voicewatch.windows import Window

DOCS = Path(__file__).resolve().parent.parent / "docs"
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
RATE = 16000


def documented_reasons() -> set[str]:
    """The reasons of docs/protocol.md's table of bad frames."""
    section = (DOCS / "protocol.md").read_text().split("## Bad frames", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))


# -- JSON, valid and not --------------------------------------------------------------------------

odd_text = (st.text(max_size=12) | st.integers(1000, 6000).map(lambda n: "x" * n)
            | st.sampled_from(["", "\u0000", "\ud800", "\ufeff", "\u202e", "é" * 3, "😀", "\\", '"', "[", "{"]))
scalars = (st.none() | st.booleans() | st.integers() | st.integers(10**300, 10**600) | st.floats()
           | st.sampled_from([0, -0.0, 1e308, 2**63, -(2**64), float("nan"), float("inf"), float("-inf")]) | odd_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)


def dumps(value: object) -> bytes:
    """JSON text as a careless or hostile peer writes it: NaN/Infinity literals, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mangled(draw: st.DrawFn, valid: dict) -> bytes:
    """`valid` with fields replaced, dropped or added, or its text broken in one of the ways peers break it."""
    data = dict(valid)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            data[draw(st.sampled_from(sorted(valid)))] = draw(json_values)
        elif action == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        else:
            data[draw(odd_text)] = draw(json_values)
    text = dumps(data)
    form = draw(st.sampled_from(["as is"] * 8 + ["duplicate", "nest", "truncate", "bom", "utf16", "latin1"]))
    if form == "duplicate" and len(text) > 2:  # a field again, later
        name = draw(st.sampled_from(sorted(valid)))
        text = text[:-1] + b", " + dumps(name) + b": " + dumps(draw(json_values)) + b"}"
    elif form == "nest":
        depth = draw(st.integers(1, 6000))
        text = text[:-1] + b', "deep": ' + b"[" * depth + b"]" * draw(st.integers(0, depth)) + b"}"
    elif form == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif form == "bom":
        text = b"\xef\xbb\xbf" + text
    elif form == "utf16":
        text = text.decode().encode("utf-16")
    elif form == "latin1":
        text = text.replace(b"s16le", "s16lé".encode("latin-1"))
    return text


def documents(valid: dict) -> st.SearchStrategy[bytes]:
    """Mostly `valid` mangled (to reach the checks behind the parser), else any JSON, bytes or deep nesting."""
    anything = (json_values.map(dumps) | st.binary(max_size=200)
                | st.integers(1, 6000).map(lambda n: b"[" * n) | st.integers(1, 6000).map(lambda n: b'{"a":' * n))
    return st.integers(0, 9).flatmap(lambda k: mangled(valid) if k < 7 else anything)


# -- ingest -----------------------------------------------------------------------------------------

HEADER = {"v": 1, "seq": 0, "rate": RATE, "channels": 1, "format": "s16le", "pts": 0.0}


def clean_frames() -> list[list[bytes]]:
    samples = (np.sin(np.arange(3 * RATE) / 5) * 9000).astype("<i2").reshape(-1, 1)
    encoder = FrameEncoder("clean", RATE, 1, "s16le")
    return [encoder.encode(samples[i:i + RATE // 2]) for i in range(0, len(samples), RATE // 2)]


def windows_of(items: list) -> list[tuple[float, float, bytes]]:
    return [(w.start, w.end, w.samples.tobytes()) for w in items if isinstance(w, Window) and w.stream == "clean"]


CONFIG = Config()
CLEAN = clean_frames()
_ALONE = Ingest(CONFIG.ingest, CONFIG.windows)
CLEAN_WINDOWS = windows_of([item for frame in CLEAN for item in _ALONE.accept(frame)])
REASONS = documented_reasons()

stream_ids = st.integers(0, 9).flatmap(lambda k: st.sampled_from([b"h0", b"h1", b"h2"]) if k < 8 else (
    st.text(max_size=70).map(str.encode) | st.binary(max_size=70) | st.sampled_from([b"h0\n", b"x" * 64 + b"\n"])
).filter(lambda s: s != b"clean"))
payloads = st.binary(max_size=96) | st.integers(0, 200).map(lambda n: bytes(16 * n))


@st.composite
def hostile_frames(draw: st.DrawFn) -> list[bytes]:
    header = draw(documents(HEADER))
    parts = [draw(stream_ids), header, draw(payloads)]
    shape = draw(st.sampled_from(["three"] * 8 + ["fewer", "more"]))
    if shape == "fewer":
        return parts[: draw(st.integers(0, 2))]
    if shape == "more":
        return parts + draw(st.lists(st.binary(max_size=8), min_size=1, max_size=3))
    return parts


def test_the_reasons_are_documented_and_the_clean_stream_makes_windows() -> None:
    assert len(CLEAN_WINDOWS) == 2
    assert {"bad_json", "nested_header", "header_too_large", "bad_stream_id", "bad_field", "bad_version"} <= REASONS


@settings(FUZZ, max_examples=6000)
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=4), at=st.lists(st.integers(0, len(CLEAN)), min_size=4, max_size=4))
def test_hostile_frames_are_accepted_or_counted_and_a_clean_stream_beside_them_is_unchanged(
        frames: list[list[bytes]], at: list[int], caplog: pytest.LogCaptureFixture) -> None:
    table = Ingest(CONFIG.ingest, CONFIG.windows)
    items: list = []
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        for index, clean in enumerate(CLEAN):
            for frame, position in zip(frames, at, strict=False):
                if position == index:
                    items += table.accept(frame)
            items += table.accept(clean)
        for frame, position in zip(frames, at, strict=False):
            if position == len(CLEAN):
                items += table.accept(frame)
    assert table.frames + sum(table.dropped.values()) == len(CLEAN) + len(frames)
    assert set(table.dropped) <= REASONS, table.dropped
    assert windows_of(items) == CLEAN_WINDOWS
    for reason in table.dropped:
        event(f"refused: {reason}")
    if table.frames > len(CLEAN):
        event("accepted")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- control ----------------------------------------------------------------------------------------

COMMAND_FIELDS = {
    "status": {}, "speakers": {}, "reload": {},
    "remove": {"name": "alice"},
    "set_threshold": {"name": "alice", "threshold": 0.8},
    "enroll": {"name": "x", "clips": ["nothing.wav"], "min_speech_s": 10},
    "enroll_stream": {"name": "x", "stream": "s", "start": 0, "end": 30},
    "clip": {"id": "20261201-180312-7"},
    "review": {"id": "20261201-180312-7", "verdict": "confirm", "note": "", "who": "me"},
    "undo": {"review": 1, "who": "me"},
    "reviews": {"limit": 5},
}


@st.composite
def control_requests(draw: st.DrawFn) -> list[bytes]:
    name = draw(st.sampled_from(sorted(COMMAND_FIELDS)))
    valid = {"v": 1, "cmd": name.removesuffix("_stream"), **COMMAND_FIELDS[name]}
    parts = [draw(documents(valid))]
    if draw(st.integers(0, 19)) == 0:
        parts += draw(st.lists(st.binary(max_size=8), max_size=2))
    return parts


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Controller:
    bank_path = tmp_path_factory.mktemp("hostile") / "bank.safetensors"
    shutil.copy(DEMO_BANK, bank_path)
    config = Config()
    config = dataclasses.replace(config, bank=dataclasses.replace(config.bank, path=str(bank_path)))
    embedder = Embedder.load(device="cpu")
    core = Core(config, embedder, SpeakerBank.load(bank_path, embedder_id=embedder.model_id))
    yield core.controller
    core.scorer.shutdown()


@settings(FUZZ, max_examples=4000)
@given(parts=control_requests())
def test_hostile_control_requests_get_a_reply_and_the_core_keeps_answering(
        parts: list[bytes], controller: Controller, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        reply = json.loads(controller.handle(parts))
        status = json.loads(controller.handle([b'{"v": 1, "cmd": "status"}']))
    assert reply["v"] == 1 and type(reply["ok"]) is bool
    assert reply["ok"] or (isinstance(reply["error"], str) and reply["error"])
    assert status["ok"] is True
    event("accepted" if reply["ok"] else "refused: " + re.sub(r"[^a-z ]", "", reply["error"].split(":")[0])[:40])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    controller.core.reload_requested.clear()
    controller.pending_events.clear()
