"""`voicewatch fuse`: nets trained apart (`voicewatch train --seed 1`, `--seed 2`, …) joined into one model file
that runs them side by side, its cosine the mean of theirs; its threshold is fixed afresh on the corpus'
validation windows the way `train` fixes one net's. Fold models (`train --hold-out`) fuse only with folds that held out
the same sources; the fused model holds them out too, its threshold fixed without their voices."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from voicewatch.embedder import Embedder, fuse
from voicewatch.training.data import held_out_sources, threshold_windows
from voicewatch.training.train import (
    add_threshold_argument,
    check_corpus,
    check_false_alarm_rate,
    validation_threshold,
)

_LOG = logging.getLogger(__name__)


def fuse_models(paths: list[Path], corpus: Path, seed: int, false_alarm: float, cache: Path | None) -> tuple[Embedder, dict]:
    if len(paths) < 2:
        raise ValueError("fuse needs two or more model files")
    check_false_alarm_rate(false_alarm)
    check_corpus(corpus)
    members = [Embedder.load(path, device="cpu") for path in paths]
    for path, member in zip(paths, members, strict=True):
        if member.shift is not None:
            raise ValueError(f"{path} carries a score shift: fuse the nets before `voicewatch calibrate`, then calibrate "
                             "the fused model")
    if len({member.settings for member in members}) != 1:
        raise ValueError("fuse needs models trained on the same features")
    held_out = {held_out_sources(path) for path in paths}
    if len(held_out) != 1:
        described = " and ".join(sorted(",".join(sources) or "none" for sources in held_out))
        raise ValueError(f"fuse needs models that held out the same sources, not {described}")
    sources = held_out.pop()
    net = fuse([member.net for member in members])
    val = threshold_windows(corpus, members[0].settings, seed, cache, sources)
    threshold = validation_threshold(net, val, false_alarm)
    info = {"threshold": round(threshold, 4), "threshold_false_alarm": false_alarm, "seed": seed,
            "members": [{"file": path.name, "id": member.model_id} for path, member in zip(paths, members, strict=True)]}
    if sources:
        info["held_out"] = list(sources)
    return Embedder(net, members[0].settings), info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="models of one shape made by `voicewatch train`")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus whose validation voices fix the threshold")
    parser.add_argument("--out", type=Path, required=True, help="model file to write (safetensors)")
    parser.add_argument("--seed", type=int, default=1, help="draw the validation windows as `voicewatch train --seed` does")
    add_threshold_argument(parser)
    parser.add_argument("--window-cache", type=Path, metavar="DIR", help="reuse prepared validation windows from here")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    embedder, info = fuse_models(args.models, args.corpus, args.seed, args.threshold_false_alarm, args.window_cache)
    embedder.save(args.out, extra=info)
    _LOG.info("%d nets fused into %s, threshold %.4f", len(args.models), args.out, info["threshold"])
    print(json.dumps(info))
    return 0
