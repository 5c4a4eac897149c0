"""`voicewatch loso`: leave-one-source-out validation of fold models (`voicewatch train --hold-out SOURCE`).

A fold model never met the voices of its held-out sources (Debian packages): not in training, not in its validation,
not in the choice of its threshold. Here each fold model is scored on those voices, every split of them:
- window trials: each voice enrolled from a third of its clips, the other clips' 2 s windows degraded by each
  broadcast condition and scored against every held-out voice (EER, minDCF at p_target 0.01);
- streams built from the held-out voices only (music beds, noise, phone band, MP2), each with its target alone in the
  bank, run through `scan` at the threshold the model carries: segment F1 and false alarms per hour.
A peer encoder (`--peer resemblyzer`) is scored on exactly the same trials and streams in the same run; having no
threshold of its own, it is given the one that lets through the share of impostor trials the model's lets through.
Per fold and pooled over folds (trials and stream counts pooled).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from voicewatch.config import load_config
from voicewatch.embedder import Embedder
from voicewatch.enrollment import enrollment_windows, exemplar_windows
from voicewatch.training.data import check_sources, corpus_sources, held_out_sources
from voicewatch.training.errorrates import eer, min_dcf, rates_at, threshold_at_false_alarm
from voicewatch.training.segments import scan_finder, segment_counts, segment_scores, window_finder
from voicewatch.training.streams import CONDITIONS, RATE, build_streams, recorded_music, split_clips
from voicewatch.training.trials import TEST_WINDOWS, condition_scores, embedder_function, enrolled_bank, shift_function

_LOG = logging.getLogger(__name__)
Embed = Callable[[np.ndarray], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Fold:
    """A model trained with `--hold-out`, and the sources it never met."""

    path: Path
    embedder: Embedder
    held_out: tuple[str, ...]


def load_fold(path: Path) -> Fold:
    """The model and the `held_out` its training recorded; a model that held nothing out is refused."""
    embedder = Embedder.load(path, device="cpu")
    held_out = held_out_sources(path)
    if not held_out:
        raise ValueError(f"{path}: not a fold model, its training held no source out (voicewatch train --hold-out SOURCE)")
    return Fold(path, embedder, held_out)


def source_voices(corpus: Path, sources: tuple[str, ...]) -> dict[str, list[Path]]:
    """Every recorded voice of these sources, whatever its split, and its clip files."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    return {e["speaker"]: [corpus / f for f in e["files"]] for e in manifest["speakers"]
            if e.get("package") in sources and e["kind"] == "human"}


@dataclasses.dataclass
class Scored:
    """One encoder's trials and stream counts on one fold."""

    target: np.ndarray
    impostor: np.ndarray
    streams: list[dict[str, float]]
    threshold: float

    def figures(self) -> dict:
        return {"eer": round(eer(self.target, self.impostor), 4), "min_dcf": round(min_dcf(self.target, self.impostor), 4),
                "trials": [len(self.target), len(self.impostor)], "threshold": round(self.threshold, 4),
                **rates_at(self.target, self.impostor, self.threshold), "streams": segment_scores(self.streams)}


def score_fold(fold: Fold, corpus: Path, peers: dict[str, Embed], conditions: tuple[str, ...], seed: int,
               config_path: str | None) -> tuple[dict, dict[str, Scored]]:
    """(the fold's description, each encoder's scores on the voices of its held-out sources)."""
    voices = source_voices(corpus, fold.held_out)
    if len(voices) < 2:
        raise ValueError(f"{fold.path}: its held-out sources {', '.join(fold.held_out)} hold fewer than two recorded "
                         f"voices in {corpus}; trials need two or more")
    enroll_clips, heard = split_clips(voices, seed)
    music = recorded_music(corpus, "val")
    enroll = {name: exemplar_windows(enrollment_windows(clips, RATE), RATE) for name, clips in enroll_clips.items()}
    tests = {name: enrollment_windows(clips, RATE)[:TEST_WINDOWS] for name, clips in heard.items()}
    streams = build_streams(heard, seed, conditions, music=music)
    config = load_config(config_path)
    model_embed = embedder_function(fold.embedder, RATE)
    embeds = {"model": model_embed, **peers}
    scored: dict[str, Scored] = {}
    with tempfile.TemporaryDirectory(prefix="voicewatch-loso-") as folder:
        for who, embed in embeds.items():
            shift = shift_function(fold.embedder, RATE) if who == "model" else None
            bank = enrolled_bank(embed, enroll, fold.embedder.threshold)
            trials = [condition_scores(embed, bank, tests, condition, seed, music, shift).trials() for condition in conditions]
            target, impostor = (np.concatenate(side) for side in zip(*trials, strict=True))
            if who == "model":
                threshold = fold.embedder.threshold
                finder = lambda alone: scan_finder(fold.embedder, alone, config, Path(folder))  # noqa: E731
            else:  # as many impostor trials through as the model lets through at its own threshold
                threshold = threshold_at_false_alarm(impostor, rates_at(scored["model"].target, scored["model"].impostor,
                                                                        fold.embedder.threshold)["false_alarm"])
                finder = lambda alone, embed=embed: window_finder(embed, alone, config)  # noqa: E731
            bank.default_threshold = threshold
            counts = [segment_counts(_target_spans(stream, bank, finder), stream.truth, stream.seconds) for stream in streams]
            scored[who] = Scored(target, impostor, counts, threshold)
            _LOG.info("%s on %s: %s", who, ",".join(fold.held_out), json.dumps(scored[who].figures()))
    described = {"model": str(fold.path), "model_id": fold.embedder.model_id, "held_out": list(fold.held_out),
                 "voices": sorted(voices), "streams": len(streams)}
    return described, scored


def _target_spans(stream, bank, finder) -> list[tuple[float, float]]:  # noqa: ANN001 - Stream, SpeakerBank, finder
    """Where `finder` finds the stream's target with a bank of the target alone (every other voice unknown)."""
    alone = bank.copy()
    for other in [name for name in bank.names if name != stream.target]:
        alone.remove(other)
    return [(s.start, s.end) for s in finder(alone)(stream) if s.speaker == stream.target]


def loso(folds: list[Fold], corpus: Path, peer: str | None, conditions: tuple[str, ...], seed: int,
         config_path: str | None = None) -> dict:
    """Every fold scored on its held-out sources, then all folds' trials and stream counts pooled."""
    for fold in folds:
        check_sources(corpus, fold.held_out)
    peers: dict[str, Embed] = {}
    if peer:
        from voicewatch.tools.peer import load_peer

        loaded = load_peer(peer)  # before any work: a missing peer is a quick, clear error
        peers[loaded.name] = lambda w: loaded.embed(torch.from_numpy(w), RATE)
    results: dict = {"conditions": list(conditions), "seed": seed, "folds": [], "pooled": {}}
    pooled: dict[str, list[Scored]] = {}
    for fold in folds:
        described, scored = score_fold(fold, corpus, peers, conditions, seed, config_path)
        results["folds"].append({**described, "scores": {who: s.figures() for who, s in scored.items()}})
        for who, s in scored.items():
            pooled.setdefault(who, []).append(s)
    for who, per_fold in pooled.items():
        joined = Scored(np.concatenate([s.target for s in per_fold]), np.concatenate([s.impostor for s in per_fold]),
                        [c for s in per_fold for c in s.streams], float("nan"))
        figures = joined.figures()
        for fixed in ("threshold", "miss", "false_alarm"):  # each fold has its own threshold: no pooled one
            figures.pop(fixed)
        results["pooled"][who] = figures
    results["sources"] = sorted(set(corpus_sources(corpus).values()) - {""})
    return results


def markdown(results: dict) -> str:
    """The results as a markdown table: one row per fold and the pooled row, each encoder side by side."""
    encoders = list(results["pooled"])
    head = ["held-out source", "voices", "trials (target / impostor)"]
    for who in encoders:
        head += [f"{who} EER", f"{who} minDCF", f"{who} stream F1", f"{who} false alarms / h"]
    rows = [head, ["---"] * len(head)]

    def cells(scores: dict) -> list[str]:
        out = []
        for who in encoders:
            s = scores[who]
            out += [f"{100 * s['eer']:.1f} %", f"{s['min_dcf']:.2f}", f"{s['streams']['f1']:.2f}",
                    f"{s['streams']['false_alarms_per_hour']:.0f}"]
        return out

    for fold in results["folds"]:
        trials = fold["scores"][encoders[0]]["trials"]
        rows.append([", ".join(fold["held_out"]), str(len(fold["voices"])), f"{trials[0]:,} / {trials[1]:,}",
                     *cells(fold["scores"])])
    trials = results["pooled"][encoders[0]]["trials"]
    voices = sum(len(fold["voices"]) for fold in results["folds"])
    rows.append(["**pooled**", str(voices), f"{trials[0]:,} / {trials[1]:,}", *cells(results["pooled"])])
    return "".join("| " + " | ".join(row) + " |\n" for row in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="FOLD_MODEL",
                        help="models trained with `voicewatch train --hold-out SOURCE` (each scored on its sources)")
    parser.add_argument("--corpus", type=Path, help="the corpus the folds were trained on")
    parser.add_argument("--peer", choices=("resemblyzer",), help="also score the same trials and streams with this peer")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="broadcast conditions (default: all)")
    parser.add_argument("--seed", type=int, default=11, help="which clips enroll and how the streams are drawn")
    parser.add_argument("-c", "--config", help="YAML config whose windows and detector settings the streams use")
    parser.add_argument("--out", type=Path, help="write the JSON results here too")
    parser.add_argument("--markdown", type=Path, help="write the results table here (markdown)")
    parser.add_argument("--table", type=Path, metavar="RESULTS_JSON",
                        help="print the markdown table of results written before by --out, and do nothing else")


def run(args: argparse.Namespace) -> int:
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())), end="")
        return 0
    if args.corpus is None or not args.models:
        raise ValueError("give --corpus DIR and one or more FOLD_MODEL files (or --table RESULTS_JSON)")
    conditions = tuple(args.conditions.split(","))
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"--conditions: unknown {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    torch.set_num_threads(2)
    folds = [load_fold(Path(path)) for path in args.models]
    results = loso(folds, args.corpus, args.peer, conditions, args.seed, args.config)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(results))
    print(json.dumps(results))
    return 0
