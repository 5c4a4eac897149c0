"""`voicewatch bench`: how many real-time streams one core holds, and how fast `scan` runs.

Live: a real `voicewatch run` subprocess, N synthetic real-time sources (48 kHz stereo s16, 100 ms
frames, wall-clock stamped) in separate sender processes over ZeroMQ (`--senders`, so that on a big
machine the sender is not the bottleneck), a bank of 100 speakers × 20 exemplars in which one speaker
matches the test signal so every window yields an event. N doubles
until the core drops windows or falls behind, then one bisection step tries halfway; latency is
measured at 50 % and 90 % of the most held.
Offline: `scan` on a 48 kHz recording, batched and one window at a time (the baseline), on one
thread; with `--scan-workers N`, `scan --workers N` on the machine's own device too. Everything is
measured in the same run; ratios compare to that run's baseline. The core's device, the machine's
cores and GPU are part of the result. With `--workers N` the core runs N stream shards
(`processing.workers`): its CPU and RSS then include theirs, and each step lists each worker's windows,
stage milliseconds per window and CPU.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch
import zmq

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config, ProcessingConfig
from voicewatch.control import request
from voicewatch.detector import central_hop_edge
from voicewatch.embedder import Embedder
from voicewatch.parallelscan import scan_parallel
from voicewatch.plugins.publisher import Publisher
from voicewatch.protocol import Event
from voicewatch.scan import scan
from voicewatch.sourceframes import FrameEncoder

RATE, CHANNELS = 48000, 2
SMALL_FRAME_MS = 20.0
"""Sources may send 20-100 ms frames; the benchmark reports the small end at half load too."""
PEER_WINDOWS = 64


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Voice-like: a buzzy harmonic tone with a syllable-rate envelope, plus noise; [T, 2] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    mono = (0.2 * voice / np.abs(voice).max() + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return np.stack([mono, mono], axis=1)


def make_bank(embedder: Embedder, path: Path, speakers: int, exemplars: int) -> None:
    """`speakers` × `exemplars`: random unit vectors, except speaker `target`, enrolled from the signal."""
    bank = SpeakerBank(embedder.model_id, embedder.dim)
    generator = torch.Generator().manual_seed(0)
    for index in range(speakers - 1):
        bank.enroll(f"s{index:03d}", torch.nn.functional.normalize(torch.randn(exemplars, embedder.dim,
                                                                               generator=generator), dim=-1))
    clip = torch.from_numpy(test_signal(2.0 * exemplars, seed=1)[:, 0])
    bank.enroll("target", embedder.embed(clip.reshape(exemplars, -1), RATE), threshold=0.0)
    bank.save(path)


def offline(recording: Path, embedder: Embedder, bank: SpeakerBank, seconds: float) -> dict:
    torch.set_num_threads(1)
    results = {}
    for name, batch in (("batched", Config().processing.max_batch_windows), ("unbatched", 1)):
        config = Config(processing=ProcessingConfig(max_batch_windows=batch))
        started = time.perf_counter()
        scan([recording], ["bench"], embedder, bank, config, chunk_s=1.0 if batch > 1 else 0.1)
        results[name] = seconds / (time.perf_counter() - started)
    torch.set_num_threads(os.cpu_count() or 1)
    return results


def parallel_scan(recording: Path, bank: SpeakerBank, seconds: float, workers: int) -> dict:
    """`scan --workers N` over copies of the recording, scored on the machine's own device (CUDA when
    present): audio-s/s over 2N files, the workers' start included, and the steady rate (the extra time that
    4N more files take), which leaves the start out."""
    embedder = Embedder.load(device="auto")
    timings = {}
    for files in (2 * workers, 6 * workers):
        started = time.perf_counter()
        parallel_scan_files([recording] * files, embedder, bank, workers)
        timings[files] = time.perf_counter() - started
    (few, short), (many, long) = sorted(timings.items())
    return {"workers": workers, "device": str(embedder.device), "files": few,
            "audio_s_per_s": round(few * seconds / short, 1),
            "steady_audio_s_per_s": round((many - few) * seconds / max(long - short, 1e-9), 1)}


def parallel_scan_files(files: list[Path], embedder: Embedder, bank: SpeakerBank, workers: int) -> None:
    scan_parallel(files, [f"f{i}" for i in range(len(files))], embedder, bank, Config(), workers)


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def peer_ratio(embedder: Embedder, args: argparse.Namespace) -> float | None:
    """Our windows/s over the peer's (Resemblyzer) on the same 2 s windows, one thread each; None without the peer."""
    try:
        from voicewatch.tools.peer import load_peer

        peer = load_peer("resemblyzer")
    except (ImportError, ValueError) as exc:  # the optional `peer` extra is not installed
        _log(args, f"no peer baseline: {exc}")
        return None
    torch.set_num_threads(1)
    try:
        windows = torch.from_numpy(test_signal(2.0 * PEER_WINDOWS)[:, 0].copy()).reshape(PEER_WINDOWS, -1)
        ours = _windows_per_s(lambda: embedder.embed(windows, RATE))
        theirs = _windows_per_s(lambda: peer.embed(windows, RATE))
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    _log(args, f"embedding 2 s windows on one thread: {ours:.0f}/s here, {theirs:.0f}/s with {peer.name}")
    return round(ours / theirs, 2)


def _windows_per_s(embed: Callable[[], object]) -> float:
    embed()  # warm-up: kernels, caches
    started = time.perf_counter()
    embed()
    return PEER_WINDOWS / (time.perf_counter() - started)


def _sender(endpoint: str, streams: range, seconds: float, frame_ms: float, wall: float,
            ready: multiprocessing.Event, dropped: multiprocessing.Value) -> None:
    """Real-time sources `b{index}` in one process: every frame period, one frame of every stream, through
    the live sources' own publisher (a frame the core cannot take now is dropped and counted, never waited for)."""
    publisher = Publisher(endpoint, lossless=False, timeout_s=10.0)
    publisher.wait_connected(30.0)
    frame = int(RATE * frame_ms / 1000)
    pcm = (test_signal(4.0) * 32767).astype("<i2")
    encoders = [FrameEncoder(f"b{i:05d}", RATE, CHANNELS, "s16le", wall=wall) for i in streams]
    ready.set()
    frames = int(seconds * 1000 / frame_ms)
    for index in range(frames):
        delay = wall + (index + 1) * frame / RATE - time.time()
        if delay > 0:
            time.sleep(delay)  # real-time pacing: a frame leaves when its last sample has been "recorded"
        offset = (index * frame) % (len(pcm) - frame)
        chunk = pcm[offset: offset + frame]
        last = index == frames - 1
        for encoder in encoders:
            message = encoder.encode(chunk, eos=last)
            publisher.send_last(message) if last else publisher.send(message)
    dropped.value = publisher.dropped
    publisher.close()


def start_senders(endpoint: str, streams: int, seconds: float, frame_ms: float, senders: int,
                  ) -> tuple[list[multiprocessing.Process], list[multiprocessing.Value]]:
    """`streams` real-time sources spread over `senders` processes, each started and ready; and where each
    will count the frames it could not queue."""
    count = max(1, min(senders, streams))
    wall = time.time() + 0.5 + 0.1 * count
    processes, dropped = [], []
    for index in range(count):
        ready = multiprocessing.Event()
        dropped.append(multiprocessing.Value("q", 0))
        processes.append(multiprocessing.Process(target=_sender, args=(endpoint, range(index, streams, count), seconds,
                                                                       frame_ms, wall, ready, dropped[-1])))
        processes[-1].start()
        ready.wait()
    return processes, dropped


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _per_worker(before: list[dict] | None, after: list[dict] | None, cpu0: list[float],
                elapsed: float) -> list[dict] | None:
    """Each stream shard's windows, stage ms per window and CPU over a step (None for a single-process core)."""
    if not before or not after:
        return None
    rows = []
    for old, new, cpu in zip(before, after, cpu0, strict=True):
        windows = max(new["windows"] - old["windows"], 1)
        stages = {stage: round(1000 * (spent - old["stage_seconds"].get(stage, 0.0)) / windows, 4)
                  for stage, spent in new["stage_seconds"].items()}
        rows.append({"worker": new["worker"], "windows": new["windows"] - old["windows"], "stage_ms_per_window": stages,
                     "cpu_percent": round(100 * (_cpu_seconds(new["pid"]) - cpu) / elapsed, 1)})
    return rows


class LiveCore:
    def __init__(self, workdir: Path, bank: Path, overrides: dict[str, dict] | None = None) -> None:
        self.ingest, self.events, self.control = (f"ipc://{workdir}/{n}" for n in ("ingest", "events", "control"))
        config = workdir / "bench.yaml"
        sections: dict[str, dict] = {
            "ingest": {"endpoint": self.ingest, "max_streams": 5000, "receive_hwm": 20000},
            "events": {"endpoint": self.events, "heartbeat_s": 0.5}, "control": {"endpoint": self.control},
            "metrics": {"port": None}, "bank": {"path": str(bank)}, "processing": {"max_lag_s": 3.0}}
        for section, values in (overrides or {}).items():
            sections.setdefault(section, {}).update(values)
        config.write_text(json.dumps(sections))
        self.process = subprocess.Popen([sys.executable, "-m", "voicewatch", "run", "-c", str(config)],
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                workers = request(self.control, {"cmd": "status"}, timeout_s=2)["workers"]
                if all(worker["pid"] for worker in workers or ()):  # its stream shards are up too
                    break
                time.sleep(0.2)
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the core did not start") from None
        self.idle_rss_mb = sum(map(_rss_mb, [self.process.pid] + [worker["pid"] for worker in workers or ()]))
        self.device = request(self.control, {"cmd": "status"})["device"]
        """The device the core scores on (its own `model.device: auto` choice)."""

    def step(self, streams: int, seconds: float, frame_ms: float, senders: int = 1) -> dict:
        """Run `streams` real-time sources, spread over `senders` processes, for `seconds`; what the core did."""
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(self.events)
        sub.setsockopt(zmq.SUBSCRIBE, b"det.")
        time.sleep(0.3)  # let the subscription reach the publisher before any frame is sent
        before = request(self.control, {"cmd": "status"})
        pids = [self.process.pid] + [worker["pid"] for worker in before["workers"] or ()]  # shards count as the core
        cpu0, rss0, t0 = sum(map(_cpu_seconds, pids)), sum(map(_rss_mb, pids)), time.monotonic()
        worker_cpu0 = [_cpu_seconds(pid) for pid in pids[1:]]
        processes, unsent = start_senders(self.ingest, streams, seconds, frame_ms, senders)
        # an event's wall_end is its last window's central hop; the latency runs from that window's end
        windows_config = Config().windows  # the bench's core runs the default windows
        edge = central_hop_edge(windows_config.length_s, windows_config.hop_s)
        latencies, rss, census = [], rss0, None
        while any(sender.is_alive() for sender in processes) or sub.poll(0):
            if sub.poll(200):
                event = Event.from_message(sub.recv_multipart())
                if event.wall_end is not None:
                    latencies.append(time.time() - (event.wall_end + edge))
            rss = max(rss, sum(map(_rss_mb, pids)))
            if census is None and time.monotonic() - t0 > 0.75 * seconds:
                census = held_per_stream(self.control, streams)
        drain = time.monotonic() + 5
        while time.monotonic() < drain:
            if sub.poll(200):
                event = Event.from_message(sub.recv_multipart())
                if event.wall_end is not None:
                    latencies.append(time.time() - (event.wall_end + edge))
        sub.close(linger=0)
        after = request(self.control, {"cmd": "status"})
        elapsed = time.monotonic() - t0
        dropped = sum(after["windows_dropped"].values()) - sum(before["windows_dropped"].values())
        windows = after["windows"] - before["windows"]
        lat = np.array(latencies) if latencies else np.array([np.nan])
        stage_ms = {stage: round(1000 * (spent - before["stage_seconds"].get(stage, 0.0)) / max(windows, 1), 4)
                    for stage, spent in after["stage_seconds"].items()}
        frames_unsent = sum(count.value for count in unsent)
        return {"streams": streams, "frame_ms": frame_ms, "windows": windows, "windows_per_s": round(windows / seconds, 1),
                "batch_windows_mean": round(windows / max(after["batches"] - before["batches"], 1), 1),
                "stage_ms_per_window": stage_ms,
                "workers": _per_worker(before["workers"], after["workers"], worker_cpu0, elapsed),
                "dropped": dropped, "cpu_percent": round(100 * (sum(map(_cpu_seconds, pids)) - cpu0) / elapsed, 1),
                "rss_mb": round(rss, 1), "rss_growth_mb": round(rss - rss0, 1),
                "latency_p50_s": round(float(np.nanpercentile(lat, 50)), 3),
                "latency_p99_s": round(float(np.nanpercentile(lat, 99)), 3),
                "frames_unsent": frames_unsent, "memory_mib_per_stream": census,
                "held": dropped == 0 and frames_unsent == 0 and float(np.nanpercentile(lat, 99)) < 2.5}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def held_per_stream(control: str, streams: int) -> dict[str, float] | None:
    """MiB per stream that the core's per-stream structures hold while its streams run. Each is allocated whole
    when its stream starts (the history's ring too), so a short step sees what an hour-long run holds."""
    memory = request(control, {"cmd": "status"}).get("memory_mib")
    if not memory:
        return None
    return {name: round(memory[name] / streams, 3) for name in ("window_buffers", "shared_frames", "history")}


def run_bench(args: argparse.Namespace) -> dict:
    seconds = args.step_seconds or (12.0 if args.quick else 30.0)
    with tempfile.TemporaryDirectory(prefix="voicewatch-bench-") as tmp:
        workdir = Path(tmp)
        embedder = Embedder.load(device="cpu")
        bank_path = workdir / "bank.safetensors"
        make_bank(embedder, bank_path, args.speakers, args.exemplars)
        recording = workdir / "recording.wav"
        offline_seconds = 60.0 if args.quick else 300.0
        soundfile.write(str(recording), test_signal(offline_seconds), RATE, subtype="PCM_16")
        scan_rates = offline(recording, embedder, SpeakerBank.load(bank_path), offline_seconds)
        _log(args, f"scan: {scan_rates['batched']:.0f} audio-s/s on one thread "
                   f"({scan_rates['batched'] / scan_rates['unbatched']:.1f}× one window at a time)")
        scan_workers = None
        if args.scan_workers:
            scan_workers = parallel_scan(recording, SpeakerBank.load(bank_path), offline_seconds, args.scan_workers)
            _log(args, f"scan --workers {args.scan_workers}: {json.dumps(scan_workers)}")
        if args.offline:
            return {"scan_audio_s_per_s_per_core": round(scan_rates["batched"], 1),
                    "unbatched_ratio": round(scan_rates["batched"] / scan_rates["unbatched"], 2),
                    "scan_workers": scan_workers, "peer_ratio": peer_ratio(embedder, args),
                    "device": str(embedder.device), "machine": machine()}
        core = LiveCore(workdir, bank_path, {"processing": {"workers": args.workers}})
        idle_rss = core.idle_rss_mb
        steps, held = [], 0
        try:
            streams, failed = args.start_streams, None
            while streams <= args.max_streams:
                result = core.step(streams, seconds, args.frame_ms, args.senders)
                steps.append(result)
                _log(args, json.dumps(result))
                if not result["held"]:
                    failed = streams
                    break
                held = streams
                streams *= 2
            if held and failed and failed > held + 1:  # one step of bisection: 1.5× the last count held
                result = core.step((held + failed) // 2, seconds, args.frame_ms, args.senders)
                steps.append(result)
                _log(args, json.dumps(result))
                held = result["streams"] if result["held"] else held
            loads = {}
            for share in (0.5, 0.9):
                if held:
                    loads[share] = core.step(max(1, int(held * share)), seconds, args.frame_ms, args.senders)
                    _log(args, f"{int(share * 100)} % load: {json.dumps(loads[share])}")
            small_frames = core.step(max(1, held // 2), seconds, SMALL_FRAME_MS, args.senders) if held else {}
            _log(args, f"50 % load in {SMALL_FRAME_MS:.0f} ms frames: {json.dumps(small_frames)}")
        finally:
            core.stop()
        peer = peer_ratio(embedder, args)
    at_half = loads.get(0.5, {})
    top = next((s for s in steps if s["streams"] == held), None)
    return {
        "realtime_streams": held,
        "latency_p50_s": at_half.get("latency_p50_s"),
        "latency_p99_s": at_half.get("latency_p99_s"),
        "latency_p99_s_at_90": loads.get(0.9, {}).get("latency_p99_s"),
        "rss_mb_per_stream": round((top["rss_mb"] - idle_rss) / held, 3) if top and held else None,
        "rss_mb_idle": round(idle_rss, 1),
        "memory_mib_per_stream": top["memory_mib_per_stream"] if top else None,
        "cpu_percent_at_max": top["cpu_percent"] if top else None,
        "windows_per_s_at_max": top["windows_per_s"] if top else None,
        "scan_audio_s_per_s_per_core": round(scan_rates["batched"], 1),
        "unbatched_ratio": round(scan_rates["batched"] / scan_rates["unbatched"], 2),
        "scan_workers": scan_workers,
        "peer_ratio": peer,
        "stage_ms_per_window": top["stage_ms_per_window"] if top else None,
        "batch_windows_mean_at_max": top["batch_windows_mean"] if top else None,
        "small_frames": {key: small_frames.get(key) for key in ("frame_ms", "streams", "held", "cpu_percent",
                                                                 "latency_p99_s")},
        "cpu_percent_at_half": at_half.get("cpu_percent"),
        "device": core.device,
        "machine": machine(),
        "senders": args.senders,
        "workers": args.workers,
        "frame_ms": args.frame_ms,
        "steps": steps,
    }


def _log(args: argparse.Namespace, line: str) -> None:
    if not args.json:
        print(line, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short steps (about 5 minutes on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print only one JSON line with the results")
    parser.add_argument("--offline", action="store_true", help="only scan throughput on a 48 kHz recording (and the peer)")
    parser.add_argument("--frame-ms", type=float, default=100.0, help="source frame length (default 100)")
    parser.add_argument("--step-seconds", type=float, help="length of each live step (default 12 with --quick, else 30)")
    parser.add_argument("--senders", type=int, default=max(1, (os.cpu_count() or 1) // 4),
                        help="sender processes the live sources are spread over (default: a quarter of the cores)")
    parser.add_argument("--scan-workers", type=int, default=0, metavar="N",
                        help="also measure `scan --workers N` on the machine's own device (default: not measured)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run the core with N stream shards (processing.workers; default 0: one process)")
    parser.add_argument("--start-streams", type=int, default=16)
    parser.add_argument("--max-streams", type=int, default=4096)
    parser.add_argument("--speakers", type=int, default=100)
    parser.add_argument("--exemplars", type=int, default=20)
    from voicewatch import soak

    soak.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.soak:
        from voicewatch import soak

        return soak.run(args)
    result = run_bench(args)
    print(json.dumps(result if args.json else {k: v for k, v in result.items() if k != "steps"}))
    return 0

