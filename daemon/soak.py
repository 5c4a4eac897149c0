"""`voicewatch bench --soak MINUTES`: the core's memory and open files over a long real-time run.

The bench's real-time senders feed `--streams` sources for MINUTES while the core's RSS and open file
descriptors are sampled every few seconds. Everything in the core that fills over time has a bound
that is reached `control.history_s` plus a window after a stream's first frame; past that point RSS
should be flat, and the growth over the run's last half says whether it is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing.connection
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from voicewatch.bench import LiveCore, _log, _rss_mb, machine, make_bank, start_senders
from voicewatch.config import Config
from voicewatch.control import request
from voicewatch.embedder import Embedder

COLUMNS = ("min", "RSS MiB", "MiB/stream", "fds", "windows/s", "dropped")
"""The table's columns; RSS is VmRSS (MiB), as in every `rss_mb` figure of the bench."""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _sample(core: LiveCore, started: float) -> dict:
    fds = open_fds(core.process.pid)  # before the status request's own connection opens one more
    status = request(core.control, {"cmd": "status"})
    return {"t_s": round(time.monotonic() - started, 1), "rss_mb": round(_rss_mb(core.process.pid), 1),
            "fds": fds, "windows": status["windows"],
            "dropped": sum(status["windows_dropped"].values()), "memory_mib": status.get("memory_mib")}


def summarise(samples: list[dict], idle_rss_mb: float, streams: int, seconds: float, filled_s: float) -> dict:
    """Steady-state figures from the samples: RSS per stream once everything time-bounded has filled, the
    RSS growth over the run's last half (the median of its second quarter-run less that of its first, so that
    one burst of catching up does not read as growth) and the fds there."""
    last_half = [s for s in samples if s["t_s"] >= seconds / 2] or samples[-1:]
    steady = [s for s in samples if s["t_s"] >= filled_s]
    middle = len(last_half) // 2
    early, late = (last_half[:middle], last_half[middle:]) if middle else (last_half, last_half)
    growth_mb = float(np.median([s["rss_mb"] for s in late]) - np.median([s["rss_mb"] for s in early]))
    rates = [_rate(a, b) for a, b in itertools.pairwise(samples)]
    return {
        "filled_after_s": round(filled_s, 1),
        "filled": bool(steady),
        "rss_mb_per_stream_steady": round((float(np.median([s["rss_mb"] for s in steady])) - idle_rss_mb) / streams, 3)
        if steady else None,
        "rss_mb_end": samples[-1]["rss_mb"],
        "rss_growth_last_half_mb": round(growth_mb, 1),
        "rss_growth_last_half_percent": round(100 * growth_mb / float(np.median([s["rss_mb"] for s in early])), 2),
        "fds_last_half": [min(s["fds"] for s in last_half), max(s["fds"] for s in last_half)],
        "windows_per_s": round(float(np.median(rates)), 1) if rates else None,
        "dropped": samples[-1]["dropped"] - samples[0]["dropped"],
    }


def _rate(earlier: dict, later: dict) -> float:
    """Windows scored per second between two samples."""
    return (later["windows"] - earlier["windows"]) / max(later["t_s"] - earlier["t_s"], 1e-9)


def table(samples: list[dict], idle_rss_mb: float, streams: int) -> str:
    rows = [" | ".join(COLUMNS)]
    previous = None
    for sample in samples:
        rate = "" if previous is None else f"{_rate(previous, sample):.0f}"
        rows.append(" | ".join((f"{sample['t_s'] / 60:.1f}", f"{sample['rss_mb']:.0f}",
                                f"{(sample['rss_mb'] - idle_rss_mb) / streams:.2f}", str(sample["fds"]), rate,
                                str(sample["dropped"]))))
        previous = sample
    return "\n".join(rows)


def run_soak(args: argparse.Namespace) -> dict:
    seconds = 60 * args.soak
    history_s = Config().control.history_s if args.history_s is None else args.history_s
    filled_s = history_s + Config().windows.length_s
    with tempfile.TemporaryDirectory(prefix="voicewatch-soak-") as tmp:
        workdir = Path(tmp)
        bank_path = workdir / "bank.safetensors"
        make_bank(Embedder.load(device="cpu"), bank_path, args.speakers, args.exemplars)
        core = LiveCore(workdir, bank_path, {"control": {"history_s": history_s}})
        samples: list[dict] = []
        try:
            idle = core.idle_rss_mb
            _log(args, f"soak: {args.streams} streams for {args.soak:g} min, history_s {history_s:g} "
                       f"(everything time-bounded full after {filled_s:g} s), idle core {idle:.0f} MB")
            _log(args, " | ".join(COLUMNS))
            processes, unsent = start_senders(core.ingest, args.streams, seconds, args.frame_ms, args.senders)
            started = time.monotonic()
            every = args.soak_every or max(2.0, seconds / 40)
            while any(process.is_alive() for process in processes):
                samples.append(_sample(core, started))
                _log(args, table(samples[-2:], idle, args.streams).splitlines()[-1])
                multiprocessing.connection.wait([p.sentinel for p in processes],
                                                timeout=max(0.0, started + len(samples) * every - time.monotonic()))
            for process in processes:
                process.join()
        finally:
            core.stop()
    return {"soak_minutes": args.soak, "streams": args.streams, "history_s": history_s, "frame_ms": args.frame_ms,
            "rss_mb_idle": round(idle, 1), **summarise(samples, idle, args.streams, seconds, filled_s),
            "frames_unsent": sum(count.value for count in unsent), "core_exit": core.process.returncode,
            "machine": machine(), "samples": samples}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak", type=float, metavar="MINUTES",
                        help="instead of the search: --streams real-time sources for MINUTES, the core's RSS and "
                             "open fds sampled over time")
    parser.add_argument("--streams", type=int, default=64, help="sources in a soak (default 64)")
    parser.add_argument("--history-s", type=float, help="the soak core's control.history_s (default: the built-in)")
    parser.add_argument("--soak-every", type=float, help="seconds between samples (default: 1/40 of the soak, >= 2)")


def run(args: argparse.Namespace) -> int:
    result = run_soak(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    return 0
