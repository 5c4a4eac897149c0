"""Synthetic 'voices' for tests that need a corpus: source-filter syllables at a given pitch and two
formants. Not speech, but distinct, repeatable sound sources with the time structure of speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

VOICES = [("low", 95.0, (500.0, 1500.0)), ("mid", 160.0, (700.0, 1100.0)), ("high", 240.0, (400.0, 2300.0)),
          ("deep", 80.0, (300.0, 900.0)), ("bright", 200.0, (900.0, 2600.0))]


def synthetic_voice(f0: float, formants: tuple[float, float], seconds: float, seed: int) -> np.ndarray:
    """Source-filter 'syllables': a pulse train at about f0 through two resonances, with pauses."""
    rate, rng = 22050, np.random.default_rng(seed)
    out = []
    for _ in range(int(seconds / 0.5)):
        n = int(rate * rng.uniform(0.25, 0.4))
        pitch = f0 * rng.uniform(0.9, 1.1)
        t = np.arange(n) / rate
        source = np.sign(np.sin(2 * np.pi * pitch * t)) * 0.1 + rng.normal(0, 0.01, n)
        shaped = sum(np.convolve(source, np.exp(-t[:200] * 600) * np.sin(2 * np.pi * f * rng.uniform(0.9, 1.1) * t[:200]),
                                 mode="same") for f in formants)
        out += [shaped * np.hanning(n), np.zeros(int(rate * rng.uniform(0.05, 0.15)))]
    audio = np.concatenate(out)
    return (audio / np.abs(audio).max() * 0.3).astype(np.float32)


def synthetic_corpus(folder: Path, splits: dict[str, list[tuple[str, float, tuple[float, float]]]], clips: int = 9,
                     sources: dict[str, str] | None = None) -> Path:
    """A corpus folder as `python -m voicewatch.training.voices` makes one: FLAC clips and manifest.json; each voice's
    source (`package`) from `sources`, else a source of its own."""
    speakers = []
    folder.mkdir(parents=True, exist_ok=True)
    for split, voices in splits.items():
        for index, (name, f0, formants) in enumerate(voices):
            files = []
            for clip in range(clips):
                path = folder / f"{name}-{clip}.flac"
                soundfile.write(str(path), synthetic_voice(f0, formants, 4.0, seed=index * 100 + clip + len(split)), 22050)
                files.append(path.name)
            speakers.append({"speaker": name, "split": split, "kind": "human", "files": files,
                             "package": (sources or {}).get(name, f"{name}-data")})
    (folder / "manifest.json").write_text(json.dumps({"rate": 22050, "speakers": speakers}))
    return folder
