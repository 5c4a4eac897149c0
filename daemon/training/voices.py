"""Build the speech corpus for training from Debian packages only: `python -m voicewatch.training.voices OUT`.

Real voices come from `klettres-data` (KDE's alphabet tutor: each language's letters and
syllables, recorded by one person per language) and `tuxpaint-stamps-default` (Tux Paint's spoken
stamp descriptions: a word or two each, one volunteer per language), synthetic ones from
`espeak-ng` voice variants and `flite` voices. Needs the Debian packages `espeak-ng` and `flite`
installed and `apt-get download` working; the data packages are only downloaded and unpacked,
never installed.

Never used, for anything: `asterisk-*`, `ktuberling-data`, `gcompris-qt-data` (reserved for an
independent evaluation).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from voicewatch.audiofile import read_audio, to_mono

_LOG = logging.getLogger(__name__)
RATE = 22050
RESERVED = re.compile(r"^(asterisk-|ktuberling-data$|gcompris-qt-data$)")
KLETTRES_VALIDATION = ("es", "ru", "it", "fr", "en")
"""Held out of training: validation trials and the shipped demo use only these voices (each one
consistent person across its letter and syllable sets, with the most audio)."""
KLETTRES_SKIP = ("ml", "de/syllab")
"""Sets that may not be the folder's one person: `ml` is large and mixed; German syllables are a
different voice from German letters (centroid cosine -0.21) and close to the Low German set (0.91)."""
TUXPAINT_LANGUAGES = ("bg", "be", "ca", "da", "el", "es", "fr", "ro", "ru")
"""Languages whose descriptions one person recorded (the package changelog names them; every stamp
category's clips embed within 0.1 of the language's mean with Resemblyzer, languages 0.5–0.8 apart).
The smaller sets (en, nl, lt, pt…) are a few dozen words or several people. Training only: the
validation voices stay the KLettres ones."""
TUXPAINT_CLIPS = 400
"""Clips per language (of ~300–930, 0.6–2 s each): 5–13 minutes of speech per voice."""
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "croak", "Alex", "Andy", "Annie", "Denis", "Gene", "Hugo", "Lee", "Mario", "Michael",
                   "Mike", "adam", "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david",
                   "edward", "grandma", "grandpa", "gustave", "john", "linda", "max", "michel", "norbert", "paul")
ESPEAK_LANGUAGES = ("en", "de", "fr", "es", "it")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


def fetch_package(name: str, into: Path) -> Path:
    """`apt-get download` + `dpkg-deb -x`: the package's files under `into/name`, nothing installed."""
    if RESERVED.match(name):
        raise ValueError(f"{name} is reserved for independent evaluation and must not be used")
    target = into / name
    if target.exists():
        return target
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", name], cwd=into, check=True, capture_output=True)
    deb = next(into.glob(f"{name}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target


def sentences(count: int, seed: int) -> list[str]:
    """Varied word sequences for the synthesisers (identity, not meaning, is what matters)."""
    words = re.findall(r"[a-z]{3,}", (Path(__file__).parents[2] / "LICENSE").read_text().lower()
                       if (Path(__file__).parents[2] / "LICENSE").exists() else
                       "voice speech channel radio television morning evening weather news report " * 20)
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 16))) + "." for _ in range(count)]


def to_model_rate(path: Path) -> np.ndarray:
    samples, rate = read_audio(path)
    mono = to_mono(samples)
    if rate != RATE:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, RATE).numpy()
    return mono


def write_speaker(out: Path, speaker: str, clips: list[np.ndarray]) -> list[str]:
    folder = out / "speakers" / speaker
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, clip in enumerate(clips):
        path = folder / f"{index:04d}.flac"
        soundfile.write(str(path), np.clip(clip, -1, 1), RATE, subtype="PCM_16")
        files.append(str(path.relative_to(out)))
    return files


def klettres_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("klettres-data", cache) / "usr/share/klettres"
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        clips = [c for c in sorted(folder.glob("**/*.ogg"))
                 if str(c.parent.relative_to(root)) not in KLETTRES_SKIP]
        if not clips or folder.name in KLETTRES_SKIP:
            continue
        speaker = f"klettres-{folder.name}"
        files = write_speaker(out, speaker, [to_model_rate(c) for c in clips])
        entries.append({"speaker": speaker, "kind": "human", "package": "klettres-data", "licence": "GPL-2+",
                        "split": "val" if folder.name in KLETTRES_VALIDATION else "train", "files": files})
        _LOG.info("%s: %d clips", speaker, len(files))
    return entries


def tuxpaint_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("tuxpaint-stamps-default", cache) / "usr/share/tuxpaint/stamps"
    entries = []
    for language in TUXPAINT_LANGUAGES:
        clips = sorted(root.glob(f"**/*_desc_{language}.ogg"))
        clips = random.Random(language).sample(clips, min(TUXPAINT_CLIPS, len(clips)))
        speaker = f"tuxpaint-{language}"
        files = write_speaker(out, speaker, [to_model_rate(c) for c in sorted(clips)])
        entries.append({"speaker": speaker, "kind": "human", "package": "tuxpaint-stamps-default", "licence": "GPL-2",
                        "split": "train", "files": files})
        _LOG.info("%s: %d clips", speaker, len(files))
    return entries


def espeak_speakers(out: Path, per_speaker: int) -> list[dict]:
    entries = []
    for language in ESPEAK_LANGUAGES:
        for variant in ESPEAK_VARIANTS[:: 1 if language == "en" else 3]:
            speaker = f"espeak-{language}-{variant}"
            clips = []
            with tempfile.TemporaryDirectory() as tmp:
                for index, text in enumerate(sentences(per_speaker, zlib.crc32(speaker.encode()))):
                    wav = Path(tmp) / f"{index}.wav"
                    subprocess.run(["espeak-ng", "-v", f"{language}+{variant}", "-w", str(wav), text], check=True)
                    clips.append(to_model_rate(wav))
            files = write_speaker(out, speaker, clips)
            entries.append({"speaker": speaker, "kind": "synthetic", "package": "espeak-ng", "licence": "GPL-3+",
                            "split": "train", "files": files})
    return entries


def flite_speakers(out: Path, per_speaker: int) -> list[dict]:
    entries = []
    for voice in FLITE_VOICES:
        speaker = f"flite-{voice}"
        clips = []
        with tempfile.TemporaryDirectory() as tmp:
            for index, text in enumerate(sentences(per_speaker, zlib.crc32(speaker.encode()))):
                wav = Path(tmp) / f"{index}.wav"
                subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True)
                clips.append(to_model_rate(wav))
        files = write_speaker(out, speaker, clips)
        entries.append({"speaker": speaker, "kind": "synthetic", "package": "flite", "licence": "BSD-like (CMU)",
                        "split": "train", "files": files})
    return entries


def build(out: Path, cache: Path, per_speaker: int = 12) -> dict:
    entries = (klettres_speakers(cache, out) + tuxpaint_speakers(cache, out) + flite_speakers(out, per_speaker)
               + espeak_speakers(out, per_speaker))
    manifest = {"rate": RATE, "speakers": entries,
                "note": "validation speakers are held out of training; reserved evaluation packages are never used"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("corpus-cache"))
    parser.add_argument("--per-speaker", type=int, default=12, help="synthesised sentences per synthetic voice")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    manifest = build(args.out, args.cache, args.per_speaker)
    print(f"{len(manifest['speakers'])} speakers → {args.out}/manifest.json")


if __name__ == "__main__":
    main()
