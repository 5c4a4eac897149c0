"""Broadcast-like validation streams with ground truth, from the corpus' held-out voices.

Each stream has one target voice taking turns with the other held-out voices, with short stretches
of music alone and of silence between turns, under one broadcast condition applied to the whole
stream: clean, a music bed or noise under everything (10 dB below the speech), the telephone band,
or MP2 coding at 64 kb/s. The target is enrolled from its own clips that never occur in a stream.
Everything is drawn from a fixed seed, so every run of `voicewatch eval` scores the same streams.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from voicewatch.audiofile import AudioFileError
from voicewatch.degrade import at_snr, music_bed, noise_bed, recorded_bed, telephone
from voicewatch.enrollment import Clip, EnrollmentError, load_clip
from voicewatch.training.codecs import codec_roundtrip

_LOG = logging.getLogger(__name__)
RATE = 22050
CONDITIONS = ("clean", "music", "noise", "phone", "mp2")
BED_SNR_DB = 10.0
MP2_BITRATE = 64000


@dataclasses.dataclass(frozen=True)
class Turn:
    speaker: str
    """A corpus speaker, or `~music` / `~silence`."""
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class Stream:
    name: str
    target: str
    condition: str
    audio: np.ndarray
    """Mono float32 at RATE."""
    turns: list[Turn]

    @property
    def truth(self) -> list[tuple[float, float]]:
        """Where the target speaks."""
        return [(t.start, t.end) for t in self.turns if t.speaker == self.target]

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def validation_voices(corpus: Path) -> dict[str, list[Path]]:
    """The validation human voices and their clip files."""
    return voices_of_split(corpus, "val")


def training_voices(corpus: Path) -> dict[str, list[Path]]:
    """The training split's human voices and their clip files (for fitting what must not see held-out voices)."""
    return voices_of_split(corpus, "train")


def voices_of_split(corpus: Path, split: str, sources: frozenset[str] | None = None) -> dict[str, list[Path]]:
    """Human voices of one split (and of these source packages only, if given) and their clip files."""
    return {e["speaker"]: [corpus / f for f in e["files"]] for e in read_manifest(corpus)["speakers"]
            if e["split"] == split and e["kind"] == "human" and (sources is None or e.get("package") in sources)}


def source_of(corpus: Path) -> dict[str, str]:
    """Speaker → the source (Debian package) of its recordings; `?` where the manifest does not say."""
    return {e["speaker"]: e.get("package", "?") for e in read_manifest(corpus)["speakers"]}


def read_manifest(corpus: Path) -> dict:
    """The corpus' manifest.json; ValueError naming the folder when it is not a corpus."""
    try:
        return json.loads((corpus / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{corpus}: not a corpus folder (python -m voicewatch.training.voices makes one): {exc}") from None


def recorded_music(corpus: Path, split: str) -> list[np.ndarray]:
    """The corpus' recorded music excerpts of one split (none in corpora built without music); an excerpt that
    is missing, unreadable or silent is left out with a warning naming it."""
    manifest = read_manifest(corpus)
    tracks = []
    for entry in manifest.get("music", []):
        if entry["split"] != split:
            continue
        try:
            tracks.append(load_clip(corpus / entry["file"], RATE).samples)
        except (AudioFileError, EnrollmentError) as exc:
            _LOG.warning("music excerpt left out: %s", exc)
    return tracks


def cohort_voices(corpus: Path, clips_per_voice: int = 8) -> dict[str, list[Path]]:
    """Training voices (human and synthetic), a few clips each: impostors for score normalisation,
    never enrolled nor tested."""
    manifest = read_manifest(corpus)
    return {e["speaker"]: [corpus / f for f in e["files"][:clips_per_voice]] for e in manifest["speakers"]
            if e["split"] == "train"}


def split_clips(voices: dict[str, list[Path]], seed: int) -> tuple[dict[str, list[Clip]], dict[str, list[Clip]]]:
    """(enrollment clips, stream clips) per voice: every third clip enrolls, the rest is heard in streams."""
    rng = np.random.default_rng(seed)
    enroll, heard = {}, {}
    for speaker, files in sorted(voices.items()):
        clips = [load_clip(path, RATE) for path in files]
        clips = [clips[i] for i in rng.permutation(len(clips))]
        enroll[speaker] = clips[::3]
        heard[speaker] = [c for i, c in enumerate(clips) if i % 3]
    return enroll, heard


def build_streams(heard: dict[str, list[Clip]], seed: int, conditions: tuple[str, ...] = CONDITIONS,
                  turns: int = 12, music: list[np.ndarray] = ()) -> list[Stream]:
    """One stream per (target voice, condition); music between turns and under the music condition from `music`
    (recorded tracks) when given, synthetic chords otherwise."""
    streams = []
    for index, target in enumerate(sorted(heard)):
        others = [s for s in sorted(heard) if s != target]
        for condition in conditions:
            rng = np.random.default_rng([seed, index, CONDITIONS.index(condition)])
            audio, layout = _layout(heard, target, others, turns, rng, music)
            streams.append(Stream(f"{target}.{condition}", target, condition,
                                  apply_condition(audio, condition, rng, music), layout))
    return streams


def _layout(heard: dict[str, list[Clip]], target: str, others: list[str], turns: int,
            rng: np.random.Generator, music: list[np.ndarray]) -> tuple[np.ndarray, list[Turn]]:
    pieces, layout, t = [], [], 0.0
    for turn in range(turns):
        speaker = target if turn % 2 == 0 else others[int(rng.integers(len(others)))]
        piece = _speech(heard[speaker], rng.uniform(4.0, 10.0), rng)
        layout.append(Turn(speaker, round(t, 3), round(t + len(piece) / RATE, 3)))
        pieces.append(piece)
        t += len(piece) / RATE
        gap = rng.choice(["~music", "~silence", None], p=[0.3, 0.3, 0.4])
        if gap is not None:
            seconds = rng.uniform(1.0, 3.0)
            filler = (_music(int(seconds * RATE), rng, music) * 0.05 if gap == "~music"
                      else np.zeros(int(seconds * RATE), dtype=np.float32))
            layout.append(Turn(str(gap), round(t, 3), round(t + seconds, 3)))
            pieces.append(filler.astype(np.float32))
            t += len(filler) / RATE
    audio = np.concatenate(pieces)
    return audio + rng.standard_normal(len(audio)).astype(np.float32) * 0.001, layout


def _speech(clips: list[Clip], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Random clips of one voice with short pauses, about `seconds` long, at a broadcast level."""
    pieces, total = [], 0
    while total < seconds * RATE:
        clip = clips[int(rng.integers(len(clips)))].samples
        pause = np.zeros(int(rng.uniform(0.08, 0.25) * RATE), dtype=np.float32)
        pieces += [clip, pause]
        total += len(clip) + len(pause)
    joined = np.concatenate(pieces)[: int(seconds * RATE)]
    return (joined * (0.25 / (np.abs(joined).max() + 1e-9))).astype(np.float32)


def _music(length: int, rng: np.random.Generator, music: list[np.ndarray]) -> np.ndarray:
    return recorded_bed(length, music, rng) if music else music_bed(length, RATE, rng)


def apply_condition(audio: np.ndarray, condition: str, rng: np.random.Generator,
                    music: list[np.ndarray] = ()) -> np.ndarray:
    if condition == "clean":
        return audio
    if condition == "music":
        return at_snr(audio, _music(len(audio), rng, music), BED_SNR_DB).astype(np.float32)
    if condition == "noise":
        return at_snr(audio, noise_bed(len(audio), rng), BED_SNR_DB).astype(np.float32)
    if condition == "phone":
        return telephone(audio, RATE).astype(np.float32)
    if condition == "mp2":
        return codec_roundtrip(audio, RATE, "mp2", MP2_BITRATE)
    raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
