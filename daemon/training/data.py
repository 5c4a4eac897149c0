"""The corpus as training windows: every voice's clips cut into 2 s windows, in clean and augmented copies,
as log-MEL features (`voicewatch train`, `pretrain`, `fuse` and `calibrate` all start from these)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from voicewatch.enrollment import enrollment_windows, load_clip
from voicewatch.features import FeatureExtractor, FeatureSettings
from voicewatch.training.augment import MUSIC_SHARE, any_music_bed, augment, noise_bed
from voicewatch.training.distill import Teacher, teacher_targets
from voicewatch.training.streams import recorded_music
from voicewatch.training.windowcache import cache_key, cached

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Windows:
    features: torch.Tensor
    """[N, n_mels, frames] float16."""
    labels: torch.Tensor
    """[N] speaker index."""
    speakers: list[str]
    targets: torch.Tensor | None = None
    """[N, teacher dim]: the teacher's embedding of each window's clean copy (with `--teacher`)."""


def speaker_windows(corpus: Path, entry: dict, rate: int, speed: float = 1.0) -> np.ndarray:
    clips = [load_clip(corpus / f, rate) for f in entry["files"]]
    if speed != 1.0:
        resampled = []
        for clip in clips:
            wave = torch.from_numpy(clip.samples)
            # playing `speed` times faster shifts pitch and formants: a different pseudo-speaker
            wave = torch.nn.functional.interpolate(wave[None, None], scale_factor=1 / speed, mode="linear")[0, 0]
            resampled.append(dataclasses.replace(clip, samples=wave.numpy()))
        clips = resampled
    return enrollment_windows(clips, rate)


def build_windows(corpus: Path, split: str, settings: FeatureSettings, copies: int, seed: int,
                  speeds: tuple[float, ...] = (1.0,), teacher: Teacher | None = None,
                  music_share: float = MUSIC_SHARE) -> Windows:
    manifest = json.loads((corpus / "manifest.json").read_text())
    music = recorded_music(corpus, split)
    extractor = FeatureExtractor(settings)
    rng = np.random.default_rng(seed)
    features, labels, speakers, targets = [], [], [], []
    for entry in manifest["speakers"]:
        if entry["split"] != split:
            continue
        for speed in speeds if entry["kind"] == "human" else (1.0,):
            windows = speaker_windows(corpus, entry, settings.sample_rate, speed)
            if len(windows) < 4:
                continue
            label = len(speakers)
            speakers.append(entry["speaker"] + ("" if speed == 1.0 else f"@{speed}"))
            if teacher is not None:
                targets += [teacher_targets(teacher, windows, settings.sample_rate)] * copies
            for copy in range(copies):
                waves = windows if copy == 0 else augment(windows, settings.sample_rate, rng, music=music,
                                                                 music_share=music_share)
                with torch.inference_mode():
                    features.append(extractor(torch.from_numpy(waves), settings.sample_rate).half())
                labels.append(torch.full((len(windows),), label))
    if split == "train":
        for name, waves in non_speech_windows(settings.sample_rate, 200, rng, music).items():
            speakers.append(name)
            if teacher is not None:
                targets.append(teacher_targets(teacher, waves, settings.sample_rate))
            with torch.inference_mode():
                features.append(extractor(torch.from_numpy(waves), settings.sample_rate).half())
            labels.append(torch.full((len(waves),), len(speakers) - 1))
    _LOG.info("%s: %d speakers, %d windows × %d copies", split, len(speakers), sum(len(f) for f in features) // copies,
              copies)
    return Windows(torch.cat(features), torch.cat(labels), speakers, torch.cat(targets) if targets else None)


def validation_windows(corpus: Path, settings: FeatureSettings, seed: int, cache: Path | None) -> Windows:
    """The held-out voices' windows, clean and one degraded copy, drawn as the run of `seed` draws them."""
    recipe = {"split": "val", "copies": 2, "seed": seed + 1, "features": dataclasses.asdict(settings)}
    return cached(cache, cache_key(corpus, **recipe), Windows, lambda: build_windows(corpus, "val", settings, 2, seed + 1))


def non_speech_windows(rate: int, count: int, rng: np.random.Generator,
                       recorded: list[np.ndarray] = ()) -> dict[str, np.ndarray]:
    """Classes of windows without a voice — noise, music (from `recorded` tracks half the time when given),
    near-silence — so that the embedding puts what a broadcast carries between speakers far from every speaker."""
    length = 2 * rate
    level = lambda: 10 ** (rng.uniform(-50, -10) / 20)  # noqa: E731
    noise = np.stack([noise_bed(length, rng) * level() for _ in range(count)])
    music = np.stack([any_music_bed(length, rate, rng, recorded) * level() / 3 for _ in range(count)])
    quiet = np.stack([noise_bed(length, rng) * 10 ** (rng.uniform(-80, -55) / 20) for _ in range(count)])
    return {"~noise": noise.astype(np.float32), "~music": music.astype(np.float32), "~quiet": quiet.astype(np.float32)}




def corpus_sources(corpus: Path) -> dict[str, str]:
    """Each voice of the corpus → its source (the Debian package it comes from, the manifest's `package`)."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    return {entry["speaker"]: entry.get("package", "") for entry in manifest["speakers"]}


def check_sources(corpus: Path, sources: tuple[str, ...]) -> None:
    """Refuses source names that no voice of the corpus comes from (a typo would hold out nothing)."""
    known = set(corpus_sources(corpus).values()) - {""}
    unknown = sorted(set(sources) - known)
    if unknown:
        raise ValueError(f"--hold-out: no voice of {corpus} comes from {', '.join(unknown)}; its sources are "
                         f"{', '.join(sorted(known))}")


def without_sources(windows: Windows, corpus: Path, sources: tuple[str, ...]) -> Windows:
    """`windows` less every voice of these sources, with its speed copies and augmented copies; the other rows keep
    their order (each voice's copies stay in blocks, as `build_windows` laid them out) and the labels are renumbered.
    Applied to windows as prepared (and cached), so one window cache serves every choice of held-out sources."""
    if not sources:
        return windows
    source_of = corpus_sources(corpus)
    kept = [label for label, name in enumerate(windows.speakers) if source_of.get(name.split("@")[0]) not in sources]
    renumber = torch.full((len(windows.speakers),), -1, dtype=windows.labels.dtype)
    renumber[kept] = torch.arange(len(kept), dtype=windows.labels.dtype)
    rows = renumber[windows.labels] >= 0
    _LOG.info("held out %s: %d of %d voices and %d of %d windows left", ", ".join(sources), len(kept),
              len(windows.speakers), int(rows.sum()), len(rows))
    return Windows(windows.features[rows], renumber[windows.labels[rows]], [windows.speakers[k] for k in kept],
                   windows.targets[rows] if windows.targets is not None else None)


def held_out_sources(path: Path) -> tuple[str, ...]:
    """The sources a model's training held out (`train --hold-out`), sorted; () for a model that held none out."""
    with safe_open(str(path), "pt") as weights:
        info = json.loads((weights.metadata() or {}).get("info", "{}"))
    held_out = (info.get("held_out") if isinstance(info, dict) else None) or []
    if not isinstance(held_out, list) or not all(isinstance(source, str) for source in held_out):
        raise ValueError(f"{path}: its held_out is {held_out!r}, not a list of source names")
    return tuple(sorted(held_out))


def threshold_windows(corpus: Path, settings: FeatureSettings, seed: int, cache: Path | None,
                      held_out: tuple[str, ...]) -> Windows:
    """The validation windows a threshold is fixed on: none of a held-out source's voices (ValueError when fewer than
    two voices are left)."""
    val = without_sources(validation_windows(corpus, settings, seed, cache), corpus, held_out)
    if len(val.speakers) < 2:
        raise ValueError(f"holding out {','.join(held_out)} leaves fewer than two validation voices to fix the threshold on")
    return val
