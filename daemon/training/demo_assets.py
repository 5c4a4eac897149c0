"""Build the shipped demo: `python -m voicewatch.training.demo_assets --corpus CORPUS`.

From three held-out (validation) human voices of the corpus: a recording with known ground truth,
enrollment clips that do not occur in the recording, and a bank enrolled from them with the shipped
model. The bank keeps the threshold the model carries (fixed on validation windows when it was
trained, before looking at the demo); `--impostor-quantile Q` instead sets per-speaker thresholds
at that quantile of the scores of a cohort of other held-out voices (never the demo itself). The
cohort's score quantiles are printed either way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import soundfile
import torch

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.enrollment import embed_clips, enrollment_windows, load_clip
from voicewatch.scan import scan, segments
from voicewatch.shipped import ASSETS, DEMO_BANK, DEMO_ENROLL, DEMO_RECORDING, DEMO_TRUTH

_LOG = logging.getLogger(__name__)
RATE = 16000
CAST = {"alice": "klettres-es", "bob": "klettres-en", "carol": "klettres-fr"}
ENROLLED = ("alice",)
COHORT = ("klettres-ru", "klettres-it")
LAYOUT = [1.0, ("alice", 14.0), ("carol", 12.0), 1.0, ("bob", 12.0), ("alice", 12.0), ("carol", 8.0),
          ("bob", 8.0), ("alice", 10.0), 1.0]
"""Seconds of silence, or (speaker, seconds of speech), in order."""


def speech(clips: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Clips joined with short natural pauses until `seconds` long."""
    pieces, total = [], 0
    while total < seconds * RATE and clips:
        clip = clips.pop(0)
        pause = np.zeros(int(rng.uniform(0.08, 0.2) * RATE), dtype=np.float32)
        pieces += [clip, pause]
        total += len(clip) + len(pause)
    joined = np.concatenate(pieces)[: int(seconds * RATE)]
    return joined * (0.25 / (np.abs(joined).max() + 1e-9))


def build(corpus: Path, impostor_quantile: float | None, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    manifest = {e["speaker"]: e for e in json.loads((corpus / "manifest.json").read_text())["speakers"]}
    embedder = Embedder.load(device="cpu")
    clips = {}
    for name, speaker in CAST.items():
        loaded = [load_clip(corpus / f, RATE) for f in manifest[speaker]["files"]]
        order = rng.permutation(len(loaded))
        clips[name] = [loaded[i] for i in order]
    # Enrollment clips: every third clip of the enrolled voices, never heard in the recording.
    enroll = {name: clips[name][::3] for name in ENROLLED}
    for name in ENROLLED:
        clips[name] = [c for i, c in enumerate(clips[name]) if i % 3]
    available = {name: [c.samples for c in cs] for name, cs in clips.items()}
    audio, truth, t = [], [], 0.0
    for part in LAYOUT:
        if isinstance(part, tuple):
            name, seconds = part
            piece = speech(available[name], seconds, rng)
            truth.append({"speaker": name, "start": round(t, 3), "end": round(t + len(piece) / RATE, 3)})
        else:
            piece = np.zeros(int(part * RATE), dtype=np.float32)
        audio.append(piece)
        t += len(piece) / RATE
    recording = np.concatenate(audio)
    recording += rng.standard_normal(len(recording)).astype(np.float32) * 0.002  # a faint noise floor
    soundfile.write(str(DEMO_RECORDING), recording, RATE, subtype="PCM_16")
    DEMO_TRUTH.write_text(json.dumps({"speaker_segments": truth, "sample_rate": RATE,
                                      "source": {n: CAST[n] for n in CAST}}, indent=1) + "\n")

    bank = SpeakerBank(embedder.model_id, embedder.dim, default_threshold=embedder.threshold)
    cohort = cohort_embeddings(corpus, manifest, embedder)
    for name in ENROLLED:
        folder = DEMO_ENROLL / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.flac"):
            old.unlink()
        joined = np.concatenate([c.samples for c in enroll[name]])
        for index, start in enumerate(range(0, len(joined), 8 * RATE)):
            soundfile.write(str(folder / f"{name}-{index:02d}.flac"), joined[start: start + 8 * RATE], RATE,
                            subtype="PCM_16")
        bank.enroll(name, embed_clips(embedder, sorted(folder.glob("*.flac"))))
    impostor = bank.score(cohort).numpy()
    cohort_quantiles = {}
    for column, name in enumerate(bank.names):
        cohort_quantiles[name] = {q: round(float(np.quantile(impostor[:, column], q)), 3) for q in (0.5, 0.95, 0.99)}
        if impostor_quantile is not None:
            bank.set_threshold(name, float(np.quantile(impostor[:, column], impostor_quantile)))
    bank.save(DEMO_BANK)
    return {"truth": truth, "thresholds": {n: bank.threshold(n) for n in bank.names},
            "cohort_score_quantiles": cohort_quantiles, "seconds": round(len(recording) / RATE, 1)}


def cohort_embeddings(corpus: Path, manifest: dict, embedder: Embedder) -> torch.Tensor:
    """2 s windows of voices that are in neither the demo nor training: the impostor cohort."""
    rate = embedder.settings.sample_rate
    windows = [enrollment_windows([load_clip(corpus / f, rate) for f in manifest[s]["files"]], rate) for s in COHORT]
    return embedder.embed(torch.from_numpy(np.concatenate(windows)), rate)


def verify(hop_s: float = 1.0) -> list[str]:
    """Scan the demo with the product's own pipeline: every true segment of an enrolled speaker found
    once with edges within one hop, and nothing else."""
    bank = SpeakerBank.load(DEMO_BANK)
    found = segments(scan([DEMO_RECORDING], ["demo"], Embedder.load(device="cpu"), bank, Config()))
    truth = json.loads(DEMO_TRUTH.read_text())["speaker_segments"]
    problems = []
    for name in bank.names:
        spans = [(t["start"], t["end"]) for t in truth if t["speaker"] == name]
        got = [(s.start, s.end) for s in found if s.speaker == name]
        if len(got) != len(spans) or any(abs(a - c) > hop_s or abs(b - d) > hop_s
                                         for (a, b), (c, d) in zip(got, spans, strict=False)):
            problems.append(f"{name}: found {got}, truth {spans}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--impostor-quantile", type=float, default=None,
                        help="set per-speaker thresholds at this quantile of cohort impostor scores")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ASSETS.mkdir(exist_ok=True)
    print(json.dumps(build(args.corpus, args.impostor_quantile), indent=1))
    problems = verify()
    print("\n".join(problems) or "scan finds every true segment of the enrolled speakers within one hop, and nothing else")


if __name__ == "__main__":
    main()
