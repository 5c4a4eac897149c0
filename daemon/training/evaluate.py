"""`voicewatch eval`: how well a model finds voices, measured the way the product works.

- Window trials (trials.py): speaker-disjoint 2 s windows of the corpus' validation voices (`--test`: its test
  voices, scored once per shipped model), each voice enrolled the product's way, test windows degraded by each
  broadcast condition and scored against every voice: EER, minDCF (p_target 0.01) and the miss/false-alarm rates
  at the threshold fixed in advance (errorrates.py), per condition, pooled, and by recording source.
- Streams (segments.py): broadcast-like streams with ground truth (streams.py) of the same voices, run through
  the real pipeline (`scan`) with a bank of those voices: precision, recall and F1 of speaking time on a 10 ms
  grid, and false-alarm segments per hour.
- Score normalisation (scorenorm.py), on the same trials: per-speaker thresholds from a cohort of the corpus'
  training voices, and AS-norm against that cohort, raw and normalised side by side.
- Or your own annotated recordings: `--rttm TRUTH.rttm --bank BANK FILE…`.
Results as one JSON document; found segments as RTTM; DET curves as PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from voicewatch.audiofile import read_audio
from voicewatch.bank import SpeakerBank
from voicewatch.config import Config, load_config
from voicewatch.embedder import Embedder
from voicewatch.enrollment import enrollment_windows, exemplar_windows
from voicewatch.scan import scan, segments
from voicewatch.training.errorrates import det_png, error_rates, pooled, threshold_at_false_alarm
from voicewatch.training.scorenorm import Cohort
from voicewatch.training.segments import (
    evaluate_streams,
    evaluate_target_streams,
    read_rttm,
    rttm_lines,
    scan_finder,
    segment_counts,
    segment_scores,
    window_finder,
)
from voicewatch.training.streams import RATE, build_streams, recorded_music, source_of, split_clips, voices_of_split
from voicewatch.training.trials import (
    TEST_WINDOWS,
    by_source,
    cohort_windows,
    condition_scores,
    embedder_function,
    enrolled_bank,
    normalisation_report,
    shift_function,
)

_LOG = logging.getLogger(__name__)
SPLITS = {False: ("val", "validation"), True: ("test", "test")}
"""--test → (the corpus split scored, its name in messages)."""


def evaluate_corpus(args: argparse.Namespace, embedder: Embedder) -> tuple[dict, dict, list[str]]:
    """(results, DET curves, RTTM lines of everything found) on the corpus' validation voices, or its test voices."""
    conditions = tuple(args.conditions.split(","))
    split, called = SPLITS[args.test]
    voices = voices_of_split(args.corpus, split)
    if len(voices) < 2:
        hint = " (python -m voicewatch.training.voices DIR --test-set-only builds them)" if args.test else ""
        raise ValueError(f"{args.corpus}: fewer than two {called} voices in manifest.json{hint}")
    embedders = {"model": embedder_function(embedder, RATE)}
    shifts = {"model": shift_function(embedder, RATE)}
    if args.peer:
        from voicewatch.tools.peer import load_peer

        peer = load_peer(args.peer)  # before any work: a missing peer is a quick, clear error
        embedders[peer.name] = lambda w: peer.embed(torch.from_numpy(w), RATE)
    enroll_clips, heard = split_clips(voices, args.seed)
    music = recorded_music(args.corpus, "val")
    enroll = {name: exemplar_windows(enrollment_windows(clips, RATE), RATE) for name, clips in enroll_clips.items()}
    tests = {name: enrollment_windows(clips, RATE)[:TEST_WINDOWS] for name, clips in heard.items()}
    sources = source_of(args.corpus)
    cohort_embedded = cohort_windows(args.corpus) if args.cohort else {}
    results: dict = {"split": split, "voices": sorted(voices), "sources": _source_summary(voices, sources),
                     "threshold": args.threshold, "trials": {}, "by_source": {}, "score_normalisation": {},
                     "streams": {}, "target_streams": {}, "peer_streams": {}}
    curves, impostors, banks = {}, {}, {}
    for who, embed in embedders.items():
        bank = banks[who] = enrolled_bank(embed, enroll, args.threshold)
        by_condition = {}
        for condition in conditions:
            started = time.perf_counter()
            by_condition[condition] = condition_scores(embed, bank, tests, condition, args.seed, music, shifts.get(who))
            _LOG.info("%s %s trials scored in %.1f s", who, condition, time.perf_counter() - started)
        per_condition = {condition: {**error_rates(*scored.trials(), args.threshold),
                                     "trials": [int(scored.is_target.sum()), int((~scored.is_target).sum())]}
                         for condition, scored in by_condition.items()}
        target, impostors[who] = pooled(scored.trials() for scored in by_condition.values())
        per_condition["pooled"] = error_rates(target, impostors[who], args.threshold)
        results["trials"][who] = per_condition
        if len(set(results["sources"])) > 1:
            results["by_source"][who] = by_source(by_condition, [sources[name] for name in bank.names], args.threshold)
        if who == "model":
            curves = {condition: scored.trials() for condition, scored in by_condition.items()}
        if cohort_embedded:
            cohort = Cohort.from_voices({name: embed(windows) for name, windows in cohort_embedded.items()})
            results["score_normalisation"][who] = normalisation_report(bank, cohort, by_condition,
                                                                       args.cohort_quantile, args.as_norm_top_k)
        _LOG.info("%s trials: %s", who, json.dumps(per_condition["pooled"]))
    streams, config = build_streams(heard, args.seed, conditions, music=music), _config(args)
    bank = banks.pop("model")
    with tempfile.TemporaryDirectory(prefix="voicewatch-eval-") as folder:
        results["streams"], found = evaluate_streams(streams, bank, scan_finder(embedder, bank, config, Path(folder)))
        results["target_streams"] = evaluate_target_streams(
            streams, bank, lambda alone: scan_finder(embedder, alone, config, Path(folder)))
    model_false_alarm = results["trials"]["model"]["pooled"]["false_alarm"]
    for who, peer_bank in banks.items():
        peer_bank.default_threshold = threshold = threshold_at_false_alarm(impostors[who], model_false_alarm)
        scores, _ = evaluate_streams(streams, peer_bank, window_finder(embedders[who], peer_bank, config))
        alone = evaluate_target_streams(streams, peer_bank, lambda b, embed=embedders[who]: window_finder(embed, b, config))
        results["peer_streams"][who] = {"threshold": round(threshold, 4), "pooled_false_alarm": model_false_alarm,
                                        **scores, "target_alone": alone}
    return results, curves, found


def _source_summary(voices: dict[str, list[Path]], sources: dict[str, str]) -> dict[str, dict]:
    """Source → its voices and minutes of speech in the corpus."""
    seconds: dict[str, list[float]] = {}
    for name, files in sorted(voices.items()):
        seconds.setdefault(sources[name], []).append(sum(soundfile.info(str(f)).duration for f in files))
    return {source: {"voices": len(each), "minutes": round(sum(each) / 60, 1)} for source, each in seconds.items()}


def evaluate_annotated(args: argparse.Namespace, embedder: Embedder) -> tuple[dict, list[str]]:
    """Your recordings against your RTTM: each file's stem is its RTTM file id."""
    truth = read_rttm(args.rttm)
    bank = SpeakerBank.load(args.bank)
    counts, lines = [], []
    for path in args.files:
        stem = Path(path).stem
        if stem not in truth:
            raise ValueError(f"{path}: no file id {stem!r} in {args.rttm} (ids: {', '.join(sorted(truth))})")
        samples, rate = read_audio(path)
        found = segments(scan([path], [_stream_id(stem)], embedder, bank, _config(args)))
        for speaker in bank.names:
            spans = [(s.start, s.end) for s in found if s.speaker == speaker]
            counts.append(segment_counts(spans, truth[stem].get(speaker, []), len(samples) / rate))
            lines += rttm_lines(stem, speaker, spans)
    return {"files": len(args.files), "speakers": bank.names, "streams": {"all": segment_scores(counts)}}, lines


def _config(args: argparse.Namespace) -> Config:
    """Windows and detector settings: the deployment's config file, else the defaults."""
    return load_config(args.config)


def _stream_id(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in stem)[:64] or "file"


def parse_seeds(text: str) -> tuple[int, ...]:
    """'11' or '11,12,13' → the eval splits, each once."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, not {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, not {text!r}")
    return seeds


def mean_over_splits(splits: list[dict]) -> dict:
    """The headline figures of several splits' results: each one's mean and its value per split."""
    figures: dict[str, list[float]] = {}
    for result in splits:
        for who, per_condition in result["trials"].items():
            figures.setdefault(f"{who} pooled EER", []).append(per_condition["pooled"]["eer"])
            figures.setdefault(f"{who} pooled minDCF", []).append(per_condition["pooled"]["min_dcf"])
        figures.setdefault("model streams F1", []).append(result["streams"]["all"]["f1"])
        figures.setdefault("model target streams F1", []).append(result["target_streams"]["all"]["f1"])
        for who, streams in result["peer_streams"].items():
            figures.setdefault(f"{who} streams F1", []).append(streams["all"]["f1"])
            figures.setdefault(f"{who} target streams F1", []).append(streams["target_alone"]["all"]["f1"])
    return {name: {"mean": round(float(np.mean(values)), 4), "per_split": values} for name, values in figures.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="recordings to score against --rttm")
    parser.add_argument("--corpus", type=Path, help="corpus folder (python -m voicewatch.training.voices): "
                                                    "window trials and streams of its validation voices")
    parser.add_argument("--test", action="store_true",
                        help="score the corpus' test voices instead (sources no training run and no choice sees; "
                             "once per shipped model)")
    parser.add_argument("--rttm", type=Path, help="ground truth of FILEs (RTTM; file id = file name stem)")
    parser.add_argument("--bank", type=Path, help="speaker bank to find in FILEs (with --rttm)")
    parser.add_argument("--model", help="embedder checkpoint (default: the shipped model)")
    parser.add_argument("-c", "--config", help="YAML config whose windows and detector settings the streams use")
    parser.add_argument("--threshold", type=float,
                        help="detection threshold fixed in advance (default: the one the model carries, else 0.7)")
    parser.add_argument("--conditions", default="clean,music,noise,phone,mp2",
                        help="broadcast conditions of trials and streams (default: all)")
    parser.add_argument("--peer", choices=("resemblyzer",), help="also score the trials with this peer model")
    parser.add_argument("--no-cohort", dest="cohort", action="store_false",
                        help="skip per-speaker thresholds and AS-norm against the corpus' training voices")
    parser.add_argument("--cohort-quantile", type=float, default=0.99,
                        help="per-speaker threshold: this quantile of the voice's cohort impostor scores (default 0.99)")
    parser.add_argument("--as-norm-top-k", type=int, default=50, help="AS-norm: top-K cohort scores per side (default 50)")
    parser.add_argument("--seed", type=parse_seeds, default=(11,), metavar="SEED[,SEED…]",
                        help="split(s) of the voices' clips into enrolled and heard (default 11); with several, each split is "
                             "evaluated and the JSON holds each one under `splits` and their means under `mean`")
    parser.add_argument("--out", type=Path, help="write the JSON results here too")
    parser.add_argument("--det", type=Path, help="DET curves per condition as PNG (needs matplotlib)")
    parser.add_argument("--rttm-out", type=Path, help="everything found, as RTTM")


def run(args: argparse.Namespace) -> int:
    if (args.corpus is None) == (args.rttm is None):
        raise ValueError("give --corpus DIR, or --rttm TRUTH --bank BANK FILE…")
    if args.rttm is not None and (args.bank is None or not args.files):
        raise ValueError("--rttm needs --bank and at least one FILE")
    if args.test and args.corpus is None:
        raise ValueError("--test scores a corpus' test voices: it needs --corpus")
    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be a cosine score from -1 to 1, not {args.threshold}")
    if not 0.0 <= args.cohort_quantile <= 1.0:
        raise ValueError(f"--cohort-quantile must be from 0 to 1, not {args.cohort_quantile}")
    if args.as_norm_top_k < 1:
        raise ValueError(f"--as-norm-top-k must be 1 or more, not {args.as_norm_top_k}")
    if len(args.seed) > 1 and (args.corpus is None or args.det is not None or args.rttm_out is not None):
        raise ValueError("several --seed values need --corpus, and go without --det and --rttm-out")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    embedder = Embedder.load(args.model, device="cpu")
    if args.threshold is None:
        args.threshold = embedder.threshold
    curves: dict = {}
    if args.corpus is not None and len(args.seed) > 1:
        splits = {seed: evaluate_corpus(argparse.Namespace(**{**vars(args), "seed": seed}), embedder)[0]
                  for seed in args.seed}
        results, lines = {"mean": mean_over_splits(list(splits.values())), "splits": splits}, []
    elif args.corpus is not None:
        args.seed = args.seed[0]
        results, curves, lines = evaluate_corpus(args, embedder)
    else:
        results, lines = evaluate_annotated(args, embedder)
    results["model"] = {"id": embedder.model_id, "path": args.model or "shipped"}
    if args.det is not None and curves:
        det_png(args.det, curves)
    if args.rttm_out is not None:
        args.rttm_out.write_text("".join(line + "\n" for line in lines))
    text = json.dumps(results)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0
