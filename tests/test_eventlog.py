"""The durable event log: ids survive restarts, and `tail --since` catches up without gap or duplicate."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from daemon_harness import Daemon, run_cli
from voicewatch.eventlog import EventLog, read_events
from voicewatch.plugins.replay import replay
from voicewatch.protocol import Event
from voicewatch.shipped import DEMO_RECORDING


def gap(stream: str) -> Event:
    return Event(type="gap", stream=stream, start=1.0, end=2.0, reason="seq_gap")


def test_ids_continue_after_the_log_is_reopened(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite")
    assert [e.id for e in log.append([gap("a"), gap("b")])] == [1, 2]
    log.close()
    reopened = EventLog(tmp_path / "events.sqlite")
    assert [e.id for e in reopened.append([gap("c")])] == [3]
    reopened.close()
    assert [(e.id, e.stream) for e in read_events(tmp_path / "events.sqlite")] == [(1, "a"), (2, "b"), (3, "c")]
    assert [e.id for e in read_events(tmp_path / "events.sqlite", since=2)] == [3]


def test_retention_deletes_only_old_events(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite", retention_days=1)
    log.append([gap("a")])
    log._db.execute("UPDATE events SET logged = logged - 2 * 86400")
    log.append([gap("b")])
    assert log.prune() == 1
    assert [e.stream for e in read_events(log.path)] == ["b"]


def test_a_restarted_core_continues_the_ids_and_tail_since_replays_then_follows(tmp_path: Path) -> None:
    log_path = tmp_path / "events.sqlite"
    first = Daemon(tmp_path, log_path=log_path)
    replay([str(DEMO_RECORDING)], first.ingest, ["before"], speed=None)
    first.wait_for_eos("before")
    assert first.stop() == 0
    before = list(read_events(log_path))
    assert before and [e.id for e in before] == list(range(1, len(before) + 1))

    second = Daemon(tmp_path, log_path=log_path)
    tail = subprocess.Popen([sys.executable, "-m", "voicewatch", "tail", "--json", "--connect", second.events,
                             "--since", "0", "--log", str(log_path)], stdout=subprocess.PIPE, text=True)
    printed: list[int] = []
    reader = threading.Thread(target=lambda: printed.extend(json.loads(line)["id"] for line in tail.stdout))
    reader.start()
    try:
        replay([str(DEMO_RECORDING)], second.ingest, ["after"], speed=None)
        second.wait_for_eos("after")
        everything = list(read_events(log_path))
        deadline = time.monotonic() + 60
        while len(printed) < len(everything) and time.monotonic() < deadline:
            second.wait_for(lambda e: e.reason == "heartbeat")
    finally:
        assert second.stop() == 0
        tail.terminate()
        tail.wait(timeout=30)
        reader.join(timeout=30)
    assert everything[len(before)].id == len(before) + 1  # ids continued after the restart
    assert printed == [e.id for e in everything]  # every logged event once, in order, none twice


def test_export_prints_finished_segments_as_rttm(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite")
    log.append([
        Event(type="start", stream="ch3", speaker="alice", start=186.0, end=188.0, peak=0.8, mean=0.8),
        Event(type="end", stream="ch3", speaker="alice", start=186.0, end=221.5, peak=0.86, mean=0.79),
        Event(type="end", stream="ch4", speaker="bob", start=10.0, end=20.0, peak=0.9, mean=0.8),
    ])
    log.close()
    result = run_cli("export", "--log", str(tmp_path / "events.sqlite"), "--rttm", "--stream", "ch3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["SPEAKER ch3 1 186.000 35.500 <NA> <NA> alice <NA> <NA>"]
    every = run_cli("export", "--log", str(tmp_path / "events.sqlite"), timeout=60)
    assert [json.loads(line)["id"] for line in every.stdout.splitlines()] == [1, 2, 3]
