"""`voicewatch demo`: a real core in a subprocess, the shipped recording replayed into it, the
events tailed, and the detected timeline printed beside the recording's ground truth."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile
import yaml
import zmq

from voicewatch.bank import SpeakerBank
from voicewatch.plugins.replay import replay
from voicewatch.protocol import Event
from voicewatch.scan import Segment, segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING, DEMO_TRUTH
from voicewatch.tail import clock

STREAM = "demo"


def overlap_f1(found: list[tuple[float, float]], truth: list[tuple[float, float]], step: float = 0.1) -> float:
    """F1 of speaking/not-speaking over 0.1 s ticks: a simple, honest timeline agreement."""
    end = max([e for _, e in found + truth], default=0.0)
    ticks = [i * step + step / 2 for i in range(int(end / step) + 1)]
    inside = lambda t, spans: any(s <= t < e for s, e in spans)  # noqa: E731
    tp = sum(inside(t, found) and inside(t, truth) for t in ticks)
    fp = sum(inside(t, found) and not inside(t, truth) for t in ticks)
    fn = sum(inside(t, truth) and not inside(t, found) for t in ticks)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def run_demo(speed: float | None = None, timeout_s: float = 300.0, web_port: int | None = None) -> int:
    """Replay the demo into a fresh core and print its timeline; with `web_port`, also serve the timeline page and
    keep core and page up until Ctrl-C (the demo bank is a copy: reviews on the page change only the copy)."""
    truth = json.loads(DEMO_TRUTH.read_text())["speaker_segments"]
    with tempfile.TemporaryDirectory(prefix="voicewatch-demo-") as tmp:
        ingest, events, control = f"ipc://{tmp}/ingest", f"ipc://{tmp}/events", f"ipc://{tmp}/control"
        bank = Path(tmp, "bank.safetensors")
        shutil.copy(DEMO_BANK, bank)
        config = Path(tmp, "config.yaml")
        config.write_text(yaml.safe_dump({
            "ingest": {"endpoint": ingest},
            "events": {"endpoint": events, "heartbeat_s": 0.2, "log_path": f"{tmp}/events.sqlite"},
            "control": {"endpoint": control}, "metrics": {"port": None}, "bank": {"path": str(bank)},
            "clips": {"path": f"{tmp}/clips"}, "web": {"port": web_port or 8090},
            "processing": {"max_lag_s": None}}))  # the recording is stamped as heard over the last minute: none of it is late
        core = subprocess.Popen([sys.executable, "-m", "voicewatch", "run", "-c", str(config)])
        web = subprocess.Popen([sys.executable, "-m", "voicewatch", "web", "-c", str(config)]) if web_port else None
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(events)
        for topic in (f"det.{STREAM}.", "status."):
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        received: list[Event] = []
        try:
            print("waiting for the core (loading model and bank)…", flush=True)
            if not _wait_for(sub, lambda e: e.reason == "heartbeat", core, timeout_s, received):
                print("the core did not come up", file=sys.stderr)
                return 1
            print(f"replaying {DEMO_RECORDING.name} into the core…", flush=True)
            sender = threading.Thread(target=replay, args=([str(DEMO_RECORDING)], ingest, [STREAM], speed),
                                      kwargs={"wall": time.time() - soundfile.info(str(DEMO_RECORDING)).duration})
            sender.start()
            done = _wait_for(sub, lambda e: e.stream == STREAM and e.reason == "eos", core, timeout_s, received)
            sender.join()
            if not done:
                print("the replay did not finish in time", file=sys.stderr)
                return 1
            _print_timeline(segments(received), truth, SpeakerBank.load(DEMO_BANK).names)
            if web is not None:
                print(f"\ntimeline page: http://127.0.0.1:{web_port}/ — see the demo's detections, hear their clips, "
                      "confirm or reject them. Ctrl-C ends the demo.", flush=True)
                while core.poll() is None and web.poll() is None:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for process in (web, core):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            if core.wait(timeout=30) not in (0, -signal.SIGTERM):
                print(f"the core exited with {core.returncode}", file=sys.stderr)
            if web is not None:
                web.wait(timeout=30)
            sub.close(linger=0)
    return 0


def _wait_for(sub: zmq.Socket, predicate, core: subprocess.Popen, timeout_s: float, into: list[Event]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and core.poll() is None:
        if sub.poll(200):
            event = Event.from_message(sub.recv_multipart())
            into.append(event)
            if predicate(event):
                return True
    return False


def _print_timeline(found: list[Segment], truth: list[dict], enrolled: list[str]) -> None:
    print("\nground truth                      detected by voicewatch")
    for speaker in sorted({t["speaker"] for t in truth} | {s.speaker for s in found}):
        spans_t = [(t["start"], t["end"]) for t in truth if t["speaker"] == speaker]
        spans_f = [(s.start, s.end, s.peak) for s in found if s.speaker == speaker]
        for i in range(max(len(spans_t), len(spans_f))):
            left = f"{speaker:<8} {clock(spans_t[i][0])}–{clock(spans_t[i][1])}" if i < len(spans_t) else ""
            right = (f"{speaker:<8} {clock(spans_f[i][0])}–{clock(spans_f[i][1])}  peak {spans_f[i][2]:.2f}"
                     if i < len(spans_f) else "")
            print(f"{left:<34}{right}")
        if speaker in enrolled:
            f1 = overlap_f1([(s, e) for s, e, _ in spans_f], spans_t)
            print(f"{speaker}: timeline F1 {f1:.2f} (0.1 s ticks)\n")
        else:
            print(f"{speaker}: not enrolled in the demo bank, so never detected\n")
