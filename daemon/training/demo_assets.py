"""Build the shipped demo: `python -m voicewatch.training.demo_assets --corpus CORPUS`.

From three held-out (validation) human voices of the corpus: a recording with known ground truth,
enrollment clips that do not occur in the recording, and a bank enrolled from them with the shipped
model. Per-speaker thresholds are set from impostor scores of a cohort of other voices (never from
the demo recording itself), at the `--impostor-quantile` of those scores.
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
from voicewatch.shipped import ASSETS, DEMO_BANK, DEMO_ENROLL, DEMO_RECORDING, DEMO_TRUTH

_LOG = logging.getLogger(__name__)
RATE = 16000
CAST = {"alice": "klettres-es", "bob": "klettres-ru", "carol": "klettres-it"}
ENROLLED = ("alice", "bob")
COHORT = ("klettres-fr", "klettres-en")
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


def build(corpus: Path, impostor_quantile: float, seed: int = 7) -> dict:
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

    bank = SpeakerBank(embedder.model_id, embedder.dim)
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
    for column, name in enumerate(bank.names):
        bank.set_threshold(name, float(np.quantile(impostor[:, column], impostor_quantile)))
    bank.save(DEMO_BANK)
    return {"truth": truth, "thresholds": {n: bank.threshold(n) for n in bank.names},
            "seconds": round(len(recording) / RATE, 1)}


def cohort_embeddings(corpus: Path, manifest: dict, embedder: Embedder) -> torch.Tensor:
    """2 s windows of voices that are in neither the demo nor training: the impostor cohort."""
    rate = embedder.settings.sample_rate
    windows = [enrollment_windows([load_clip(corpus / f, rate) for f in manifest[s]["files"]], rate) for s in COHORT]
    return embedder.embed(torch.from_numpy(np.concatenate(windows)), rate)


def verify() -> list[str]:
    """Per-window scores of the demo against its truth: windows wholly inside / outside a segment."""
    embedder, bank = Embedder.load(device="cpu"), SpeakerBank.load(DEMO_BANK)
    audio, rate = soundfile.read(str(DEMO_RECORDING), dtype="float32")
    truth = json.loads(DEMO_TRUTH.read_text())["speaker_segments"]
    starts = np.arange(0, len(audio) / rate - 2.0 + 1e-9, 1.0)
    waves = np.stack([audio[int(s * rate): int(s * rate) + 2 * rate] for s in starts])
    scores = bank.score(embedder.embed(torch.from_numpy(waves), rate)).numpy()
    gate = Config().detector.min_level_dbfs
    audible = 10 * np.log10(np.mean(np.square(waves), axis=1) + 1e-12) >= gate  # as the pipeline gates
    problems = []
    for row, start in enumerate(starts):
        for column, name in enumerate(bank.names):
            spans = [(t["start"], t["end"]) for t in truth if t["speaker"] == name]
            inside = any(s <= start and start + 2 <= e for s, e in spans)
            outside = not any(s < start + 2 and start < e for s, e in spans)
            positive = scores[row, column] > bank.threshold(name) and audible[row]
            if inside and not positive or outside and positive:
                problems.append(f"{name} window {start:.0f}-{start + 2:.0f} s: score {scores[row, column]:.3f} "
                                f"vs threshold {bank.threshold(name):.3f} ({'inside' if inside else 'outside'})")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--impostor-quantile", type=float, default=0.995)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ASSETS.mkdir(exist_ok=True)
    print(json.dumps(build(args.corpus, args.impostor_quantile), indent=1))
    problems = verify()
    print("\n".join(problems) or "every window wholly inside a segment passes, every window wholly outside fails")


if __name__ == "__main__":
    main()
