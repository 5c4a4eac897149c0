"""Build the speech corpus for training from Debian packages only: `python -m voicewatch.training.voices OUT`.

Real voices come from `klettres-data` (KDE's alphabet tutor: each language's letters and
syllables, recorded by one person per language) and `tuxpaint-stamps-default` (Tux Paint's spoken
stamp descriptions: a word or two each, one volunteer per language) and `gcin-voice` (every Mandarin
syllable, recorded by each of two people) and `codec2-examples` (the speech samples of the Codec 2
project: radio amateurs on the air, 8 kHz) and `fillets-ng-data-cs`, `-nl` (Fish Fillets NG's Czech
and Dutch dubbed dialogue, the two fish of each) and `kajongg` (spoken Mahjong calls, English and
German), synthetic ones from `espeak-ng` voice variants, `flite` voices and Festival's voices
(`festvox-*`: diphone, unit-selection and HTS voices each built from one person's recordings).
Needs the Debian packages `espeak-ng`, `flite`, `festival` and the voices of
FESTIVAL_VOICES installed (a missing one stops the build before anything is written) and `apt-get
download` working; the data packages are only downloaded and unpacked, never installed.

The test set, `drascula` and `drascula-spanish` (the English and Spanish casts of an adventure game), is
written with split `test`: no training run and no choice reads it; `--test-set-only` builds it alone, with the
validation music, for `voicewatch eval --test`.

Never used, for anything: `asterisk-*`, `ktuberling-data`, `gcompris-qt-data` (reserved for an
independent evaluation).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from voicewatch.audiofile import AudioFileError, read_audio, to_mono

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
GCIN_SPEAKERS = {"3": "GPL-3 or LGPL-3", "5": "CC-BY-3.0"}
"""`gcin-voice` holds each syllable twice: `3.ogg` (Edward Der-Hua Liu) and `5.ogg` (Chu Lo for the
ChionMeilin project); Resemblyzer puts the two 0.43 apart and each consistent with itself. Both are
validation voices (with KLETTRES_VALIDATION): seven held-out people make steadier figures than five."""
GCIN_SYLLABLES_PER_CLIP = 6
CODEC2_SAMPLES = ("ve9qrp", "vk2tpm_004", "vk5qi", "david4")
"""Codec 2's samples with at least 13 s of one voice (112, 35, 13.5 and 30 s; Resemblyzer puts them
0.40–0.73 apart); the shorter ones are a few seconds each."""
FILLETS_LANGUAGES = ("cs", "nl")
FILLETS_ROLES = ("m", "v")
"""Fish Fillets NG's dubbed dialogue (`fillets-ng-data-cs`, `-nl`): lines named `<level>-<role>-<key>.ogg`, role
`m` the small fish and `v` the big one, each language's pair voiced by two actors (33–38 minutes each; Resemblyzer
puts the four at cosine 0.65–0.75 to one another and at most 0.78 to any validation voice). Side characters are left out."""
FILLETS_CLIPS = 300
"""Lines per voice (of ~600, 1–8 s): about 17 minutes of conversational speech each."""
KAJONGG_VOICES = {"kajongg-female1": ("female1", "de/female1"), "kajongg-female2": ("female2", "de/female2"),
                  "kajongg-male1": ("male1", "de/male1"), "kajongg-male2": ("male2",), "kajongg-de-male2": ("de/male2",)}
"""Kajongg's spoken Mahjong calls (42 per voice folder, English and German): three people recorded both languages
(Resemblyzer 0.90–0.96 across their two folders, so one speaker each); `male2` and `de/male2` are two others."""
DRASCULA_LANGUAGES = {"drascula": "en", "drascula-spanish": "es"}
"""Drascula: The Vampire Strikes Back (Alcachofa Soft, 1996), its English dub and its Spanish original: two casts
recorded apart, each line a raw file `NAME.ALS` (8-bit unsigned PCM at 11,025 Hz)."""
DRASCULA_CHARACTERS = {"hacker": r"\d+|D(5[6-9]|6[0-7])", "drascula": r"D([1-9]|[1-3]\d|40)", "vonbraun": r"VB\d+",
                       "bj": r"BJ\d+", "igor": r"I\d+", "werewolf": r"L\d+", "musician": r"E\d+",
                       "bartender": r"T\d+|D82", "drunk": r"B\d+", "blind": r"D(6[89]|7\d|8[01])", "pianist": r"P\d+"}
"""Character → the names of their lines, as the game engine (ScummVM's `talk_*`) plays them: John Hacker's are
numbered, and `D56`–`D67` are his too; Drascula has `D1`–`D40`, the blind man `D68`–`D81`, the bartender `D82`."""
DRASCULA_LICENCE = "Drascula-License (Alcachofa Soft S.L.: free to copy and modify with notice, not to sell)"
DRASCULA_MIN_SECONDS = 60.0
"""A character joins the test set in a language only with this much speech in it (lines under 0.25 s left out)."""
DRASCULA_RATE = 11025
TEST_SOURCES = tuple(DRASCULA_LANGUAGES)
"""Sources of the test set: no training run and no choice ever sees them; scored once per shipped model."""
MUSIC_SOURCES = {
    "wesnoth-1.16-music": ("usr/share/games/wesnoth/1.16/data/core/music", "GPL-2+", "train"),
    "warzone2100-music": ("usr/share/games/warzone2100/music", "GPL-2+", "train"),
    "hyperrogue-music": ("usr/share/hyperrogue/music", "GPL-2+ or CC-BY-SA-3.0 (per track: the package's copyright)",
                         "val"),
    "fillets-ng-data": ("usr/share/games/fillets-ng/music", "GPL-2", "val")}
"""Recorded music (Debian package → its music folder, licence, split): instrumental game soundtracks, orchestral,
electronic and band. Training windows get beds from the `train` packages; the validation streams' music comes from
the `val` ones, other composers, so the music condition is not scored on music the model was trained under."""
MUSIC_EXCERPT_SECONDS = 30
"""Each track contributes one excerpt from its middle."""
FESTIVAL_VOICES = {
    "kal_diphone": ("festvox-kallpc16k", "BSD-like (CMU/Edinburgh)"),
    "ked_diphone": ("festvox-kdlpc16k", "BSD-like (CMU/Edinburgh)"),
    "cmu_us_slt_arctic_hts": ("festvox-us-slt-hts", "BSD-like (CMU)"),
    "lp_diphone": ("festvox-italp16k", "GPL-2+"), "pc_diphone": ("festvox-itapc16k", "GPL-2+"),
    "msu_ru_nsh_clunits": ("festvox-ru", "BSD-like"),
    "czech_dita": ("festvox-czech-dita", "GPL-3+"), "czech_krb": ("festvox-czech-krb", "GPL-3+"),
    "czech_machac": ("festvox-czech-machac", "GPL-3+"), "czech_ph": ("festvox-czech-ph", "GPL-3+"),
    "suo_fi_lj_diphone": ("festvox-suopuhe-lj", "LGPL-2+"), "hy_fi_mv_diphone": ("festvox-suopuhe-mv", "LGPL-2+"),
    "upc_ca_ona_hts": ("festvox-ca-ona-hts", "LGPL-2.1+"), "hindi_NSK_diphone": ("festvox-hi-nsk", "GPL-2+")}
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
"""Festival voice → (its Debian package, licence). One per person: the Marathi and Telugu NSK voices are the Hindi
one's speaker (Resemblyzer cosine 0.99), so only the Hindi voice is used."""
HINDI_WORDS = ("नमस्ते", "आज", "मौसम", "अच्छा", "है", "और", "समाचार", "रेडियो", "पर", "सुनिए", "शहर", "बारिश", "सुबह", "शाम",
               "लोग", "सरकार", "खेल", "पानी", "दिन", "रात", "बाज़ार", "गाड़ी", "किताब", "घर", "देश", "नया", "पुराना", "बहुत")
NATIVE_WORDS = {"hindi_NSK_diphone": HINDI_WORDS}
"""Festival voices that read only their own script; the others read the Latin words of `sentences`."""
FESTIVAL_SUPPORT = {"festival-hi": Path("/usr/share/festival/hindi_scm")}
"""Festival language packages the voices load (the Hindi voice's phone set; only Recommended by its package)."""
TOOLS = {"apt-get": "apt", "dpkg-deb": "dpkg", "espeak-ng": "espeak-ng", "flite": "flite", "text2wave": "festival"}
"""Programs the builder runs → the Debian package that provides each."""


class CorpusError(Exception):
    """The corpus cannot be built here; the message says what to install or what failed."""


def missing_packages() -> list[str]:
    """Debian packages the builder needs and the host lacks (programs and Festival voices)."""
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    missing += [package for voice, (package, _) in FESTIVAL_VOICES.items()
                if not any(FESTIVAL_VOICE_DIR.glob(f"*/{voice}"))]
    return missing + [package for package, folder in FESTIVAL_SUPPORT.items() if not folder.is_dir()]


def fetch_package(name: str, into: Path) -> Path:
    """`apt-get download` + `dpkg-deb -x`: the package's files under `into/name`, nothing installed."""
    if RESERVED.match(name):
        raise ValueError(f"{name} is reserved for independent evaluation and must not be used")
    target = into / name
    if target.exists():
        return target
    into.mkdir(parents=True, exist_ok=True)
    run_tool(["apt-get", "download", name], cwd=into)
    deb = next(into.glob(f"{name}_*.deb"))
    run_tool(["dpkg-deb", "-x", str(deb), str(target)])
    return target


def run_tool(argv: list[str], **kwargs: object) -> str:
    """The tool's stderr; CorpusError with its last lines when it fails."""
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs).stderr.decode(errors="replace")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise CorpusError(f"{' '.join(argv)} failed (exit {exc.returncode}): {' / '.join(detail) or 'no message'}") from None


def synthesise(texts: list[str], argv: Callable[[str, Path, Path], list[str]]) -> list[np.ndarray]:
    """Each text through a synthesiser's command line, `argv(text, text file, WAV file to write)`, at the
    model rate."""
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, text in enumerate(texts):
            text_file, wav = Path(tmp) / f"{index}.txt", Path(tmp) / f"{index}.wav"
            text_file.write_text(text, encoding="utf-8")
            complaints = run_tool(argv(text, text_file, wav))
            if not wav.is_file() or wav.stat().st_size == 0:  # text2wave exits 0 when a voice fails to load
                said = " / ".join(complaints.strip().splitlines()[-3:]) or "no message"
                raise CorpusError(f"{argv(text, text_file, wav)[0]} wrote no audio: {said}")
            clips.append(to_model_rate(wav))
    return clips


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


def readable_clips(paths: list[Path]) -> list[np.ndarray]:
    """Each file at the model rate, leaving out (with a warning) the ones that hold no audio: a few of the dubbed
    lines ship empty."""
    clips = []
    for path in paths:
        try:
            clips.append(to_model_rate(path))
        except AudioFileError as exc:
            _LOG.warning("left out: %s", exc)
    return clips


def write_speaker(out: Path, speaker: str, clips: list[np.ndarray]) -> list[str]:
    folder = out / "speakers" / speaker
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, clip in enumerate(clips):
        path = folder / f"{index:04d}.flac"
        soundfile.write(str(path), np.clip(clip, -1, 1), RATE, subtype="PCM_16")
        files.append(str(path.relative_to(out)))
    return files


def recorded_voice(out: Path, speaker: str, clips: list[np.ndarray], package: str, licence: str,
                   split: str = "train") -> dict:
    """Write one recorded person's clips and return their manifest entry (CorpusError when the package held none:
    its layout changed)."""
    if not clips:
        raise CorpusError(f"{package}: no clips found for {speaker} (has the package's layout changed?)")
    files = write_speaker(out, speaker, clips)
    _LOG.info("%s: %d clips", speaker, len(files))
    return {"speaker": speaker, "kind": "human", "package": package, "licence": licence, "split": split, "files": files}


def klettres_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("klettres-data", cache) / "usr/share/klettres"
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        clips = [c for c in sorted(folder.glob("**/*.ogg"))
                 if str(c.parent.relative_to(root)) not in KLETTRES_SKIP]
        if not clips or folder.name in KLETTRES_SKIP:
            continue
        entries.append(recorded_voice(out, f"klettres-{folder.name}", [to_model_rate(c) for c in clips],
                                      "klettres-data", "GPL-2+",
                                      "val" if folder.name in KLETTRES_VALIDATION else "train"))
    return entries


def tuxpaint_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("tuxpaint-stamps-default", cache) / "usr/share/tuxpaint/stamps"
    entries = []
    for language in TUXPAINT_LANGUAGES:
        clips = sorted(root.glob(f"**/*_desc_{language}.ogg"))
        clips = random.Random(language).sample(clips, min(TUXPAINT_CLIPS, len(clips)))
        entries.append(recorded_voice(out, f"tuxpaint-{language}", [to_model_rate(c) for c in sorted(clips)],
                                      "tuxpaint-stamps-default", "GPL-2"))
    return entries


def gcin_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("gcin-voice", cache) / "usr/share/gcin-voice/ogg"
    entries = []
    for take, licence in GCIN_SPEAKERS.items():
        syllables = sorted(root.glob(f"*/{take}.ogg"))
        random.Random(take).shuffle(syllables)
        clips = [np.concatenate([to_model_rate(s) for s in syllables[start:start + GCIN_SYLLABLES_PER_CLIP]])
                 for start in range(0, len(syllables), GCIN_SYLLABLES_PER_CLIP)]
        entries.append(recorded_voice(out, f"gcin-{take}", clips, "gcin-voice", licence, "val"))
    return entries


def codec2_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("codec2-examples", cache) / "usr/share/codec2/wav"
    entries = []
    for sample in CODEC2_SAMPLES:
        recording = to_model_rate(root / f"{sample}.wav")
        entries.append(recorded_voice(out, f"codec2-{sample}",
                                      np.array_split(recording, max(1, len(recording) // (5 * RATE))),
                                      "codec2-examples", "LGPL-2.1"))
    return entries


def fillets_speakers(cache: Path, out: Path) -> list[dict]:
    entries = []
    for language in FILLETS_LANGUAGES:
        root = fetch_package(f"fillets-ng-data-{language}", cache) / "usr/share/games/fillets-ng/sound"
        for role in FILLETS_ROLES:
            lines = sorted(p for p in root.glob(f"*/{language}/*.ogg") if p.stem.split("-")[1:2] == [role])
            lines = random.Random(f"{language}-{role}").sample(lines, min(FILLETS_CLIPS, len(lines)))
            entries.append(recorded_voice(out, f"fillets-{language}-{role}", readable_clips(sorted(lines)),
                                          f"fillets-ng-data-{language}", "GPL-2"))
    return entries


def kajongg_speakers(cache: Path, out: Path) -> list[dict]:
    root = fetch_package("kajongg", cache) / "usr/share/kajongg/voices"
    return [recorded_voice(out, speaker, readable_clips([call for folder in folders
                                                         for call in sorted((root / folder).glob("*.ogg"))]),
                           "kajongg", "GPL-2+")
            for speaker, folders in KAJONGG_VOICES.items()]


def drascula_speakers(cache: Path, out: Path) -> list[dict]:
    """Each cast's characters with a minute or more of speech. The Spanish package links some names to the English
    takes (`../en/…`): those are not Spanish recordings and are left out."""
    entries = []
    for package, language in DRASCULA_LANGUAGES.items():
        root = fetch_package(package, cache) / "usr/share/scummvm/drascula" / language
        lines = sorted(path for path in root.glob("*.ALS") if not path.is_symlink())
        if not lines:
            raise CorpusError(f"{package}: no lines under {root.relative_to(cache)} (has the package's layout changed?)")
        for character, pattern in DRASCULA_CHARACTERS.items():
            clips = [clip for path in lines if re.fullmatch(pattern, path.stem) and len(clip := _raw_u8(path))]
            seconds = sum(len(clip) for clip in clips) / RATE
            if seconds < DRASCULA_MIN_SECONDS:
                _LOG.info("drascula-%s-%s left out: %.0f s of speech", language, character, seconds)
                continue
            entries.append(recorded_voice(out, f"drascula-{language}-{character}", clips, package, DRASCULA_LICENCE,
                                          "test"))
    return entries


def _raw_u8(path: Path) -> np.ndarray:
    """A Drascula line at the model rate; empty when it is shorter than a quarter of a second."""
    samples = (np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if len(samples) < DRASCULA_RATE // 4:
        return np.zeros(0, np.float32)
    return torchaudio.functional.resample(torch.from_numpy(samples), DRASCULA_RATE, RATE).numpy()


def music_excerpts(cache: Path, out: Path, splits: tuple[str, ...] = ("train", "val")) -> list[dict]:
    folder = out / "music"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for package, (inside, licence, split) in MUSIC_SOURCES.items():
        if split not in splits:
            continue
        tracks = sorted(p for p in (fetch_package(package, cache) / inside).rglob("*")
                        if p.suffix in (".ogg", ".opus"))
        length = MUSIC_EXCERPT_SECONDS * RATE
        for track in tracks:
            decoded = readable_clips([track])
            if not decoded or len(decoded[0]) < length:
                continue
            start = (len(decoded[0]) - length) // 2
            excerpt = decoded[0][start:start + length]
            path = folder / f"{package}-{track.stem}.flac"
            soundfile.write(str(path), np.clip(excerpt, -1, 1), RATE, subtype="PCM_16")
            entries.append({"file": str(path.relative_to(out)), "package": package, "licence": licence, "split": split})
        found = sum(e["package"] == package for e in entries)
        if not found:
            raise CorpusError(f"{package}: no track of {MUSIC_EXCERPT_SECONDS} s or more under {inside} "
                              "(has the package's layout changed?)")
        _LOG.info("%s: %d music excerpts", package, found)
    return entries


def festival_speakers(out: Path, per_speaker: int) -> list[dict]:
    entries = []
    for voice, (package, licence) in FESTIVAL_VOICES.items():
        speaker = f"festival-{voice}"
        seed = zlib.crc32(speaker.encode())
        words = NATIVE_WORDS.get(voice)
        texts = (sentences(per_speaker, seed) if words is None else
                 [" ".join(random.Random(seed + n).choices(words, k=12)) for n in range(per_speaker)])
        clips = synthesise(texts, lambda _, text_file, wav, voice=voice: [
            "text2wave", "-eval", f"(voice_{voice})", "-o", str(wav), str(text_file)])
        files = write_speaker(out, speaker, clips)
        entries.append({"speaker": speaker, "kind": "synthetic", "package": package, "licence": licence,
                        "split": "train", "files": files})
    return entries


def espeak_speakers(out: Path, per_speaker: int) -> list[dict]:
    entries = []
    for language in ESPEAK_LANGUAGES:
        for variant in ESPEAK_VARIANTS[:: 1 if language == "en" else 3]:
            speaker = f"espeak-{language}-{variant}"
            texts = sentences(per_speaker, zlib.crc32(speaker.encode()))
            clips = synthesise(texts, lambda text, _, wav, v=f"{language}+{variant}": [
                "espeak-ng", "-v", v, "-w", str(wav), text])
            files = write_speaker(out, speaker, clips)
            entries.append({"speaker": speaker, "kind": "synthetic", "package": "espeak-ng", "licence": "GPL-3+",
                            "split": "train", "files": files})
    return entries


def flite_speakers(out: Path, per_speaker: int) -> list[dict]:
    entries = []
    for voice in FLITE_VOICES:
        speaker = f"flite-{voice}"
        clips = synthesise(sentences(per_speaker, zlib.crc32(speaker.encode())), lambda text, _, wav, voice=voice: [
            "flite", "-voice", voice, "-t", text, "-o", str(wav)])
        files = write_speaker(out, speaker, clips)
        entries.append({"speaker": speaker, "kind": "synthetic", "package": "flite", "licence": "BSD-like (CMU)",
                        "split": "train", "files": files})
    return entries


def build(out: Path, cache: Path, per_speaker: int = 12) -> dict:
    missing = missing_packages()
    if missing:  # before anything is downloaded or written
        raise CorpusError(f"missing Debian packages: {' '.join(missing)} (apt-get install -y {' '.join(missing)}; "
                          "docs/training.md)")
    entries = (klettres_speakers(cache, out) + tuxpaint_speakers(cache, out) + gcin_speakers(cache, out)
               + codec2_speakers(cache, out) + fillets_speakers(cache, out) + kajongg_speakers(cache, out)
               + flite_speakers(out, per_speaker) + festival_speakers(out, per_speaker)
               + espeak_speakers(out, per_speaker))
    return write_manifest(out, entries + drascula_speakers(cache, out), music_excerpts(cache, out))


def build_test_set(out: Path, cache: Path) -> dict:
    """The test sources' voices and the music of the validation streams, nothing else (no synthesisers needed)."""
    return write_manifest(out, drascula_speakers(cache, out),
                          music_excerpts(cache, out, ("val",)))


def write_manifest(out: Path, speakers: list[dict], music: list[dict]) -> dict:
    manifest = {"rate": RATE, "speakers": speakers, "music": music,
                "note": "validation and test speakers are held out of training; reserved evaluation packages are "
                        "never used"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("corpus-cache"))
    parser.add_argument("--test-set-only", action="store_true",
                        help="build only the test sources' voices and the validation music (for `voicewatch eval --test`)")
    parser.add_argument("--per-speaker", type=int, default=12, help="synthesised sentences per synthetic voice")
    args = parser.parse_args()
    if args.per_speaker < 1:
        parser.error(f"--per-speaker must be 1 or more, not {args.per_speaker}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = (build_test_set(args.out, args.cache) if args.test_set_only
                    else build(args.out, args.cache, args.per_speaker))
    except CorpusError as exc:
        print(f"voicewatch corpus: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(manifest['speakers'])} speakers → {args.out}/manifest.json")


if __name__ == "__main__":
    main()
