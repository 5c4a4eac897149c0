"""`voicewatch train`: the conv1d embedder, trained with cosine triplets and mined hard negatives.

Loss per anchor, margin 0.3 (the customer's notes): `max(0, m + cos(a, n) − cos(a, p))` with
- batch-hard mining inside a P×K batch (hardest positive, hardest negative), and
- hard negatives mined **outside** the batch: a pool of other windows' embeddings, refreshed every
  `--pool-every` steps, is scored against all anchors with one matrix product; each anchor's worst
  violator of another speaker is embedded afresh and adds a second triplet term.
Features are computed once per window and augmentation (noise and music beds at 0–20 dB SNR,
telephone band, speed-perturbed pseudo-speakers) is baked into several copies of each window; with
`--paired-copies` a batch holds each of its windows in two copies.
With `--teacher`, every copy is also pulled towards a teacher's embedding of the clean window
(daemon/training/distill.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from voicewatch.atomicfile import atomic_write_bytes
from voicewatch.embedder import POOLINGS, Architecture, Embedder, EmbedderNet
from voicewatch.features import FeatureSettings
from voicewatch.training.augment import BED_SHARE, MUSIC_SHARE, check_music_share
from voicewatch.training.classifier import MarginClassifier
from voicewatch.training.data import Windows, build_windows, check_sources, threshold_windows, without_sources
from voicewatch.training.distill import ModelTeacher, distill_loss, load_teacher, similarity_loss
from voicewatch.training.errorrates import threshold_at_false_alarm
from voicewatch.training.memory import Memory
from voicewatch.training.pretrain import load_encoder
from voicewatch.training.trials import net_window_trials, window_trials_eer
from voicewatch.training.windowcache import cache_key, cached

_LOG = logging.getLogger(__name__)


def parse_speeds(text: str) -> tuple[float, ...]:
    """`--speeds`: comma-separated playback speeds, 1.0 first (the voice itself)."""
    try:
        speeds = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--speeds must be numbers separated by commas, not {text!r}") from None
    if speeds[0] != 1.0 or not all(0.5 <= speed <= 2.0 for speed in speeds) or len(set(speeds)) < len(speeds):
        raise ValueError(f"--speeds must start with 1.0 and hold distinct speeds between 0.5 and 2, not {text!r}")
    return speeds


def parse_sources(text: str | None) -> tuple[str, ...]:
    """`--hold-out`: comma-separated sources (Debian package names), each once."""
    if text is None:
        return ()
    sources = tuple(part.strip() for part in text.split(","))
    if not all(sources) or len(set(sources)) < len(sources):
        raise ValueError(f"--hold-out must name sources separated by commas, each once, not {text!r}")
    return sources


def check_corpus(corpus: Path) -> None:
    if not (corpus / "manifest.json").is_file():
        raise ValueError(f"{corpus}: not a corpus folder, no manifest.json (python -m voicewatch.training.voices makes one)")


def check_false_alarm_rate(rate: float) -> None:
    if not 0.0 < rate < 1.0:
        raise ValueError(f"--threshold-false-alarm must be between 0 and 1, not {rate}")


def add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold-false-alarm", type=float, default=0.05, metavar="RATE",
                        help="the model's detection threshold lets this share of validation impostor windows through")


def validation_threshold(net: torch.nn.Module, val: Windows, false_alarm: float,
                         shift: torch.nn.Module | None = None) -> float:
    """A model's detection threshold, fixed from validation windows (never from a stream's scores): the score
    that `false_alarm` of the impostor windows reach (with the model's score shift, if it has one)."""
    with torch.no_grad():
        return threshold_at_false_alarm(net_window_trials(net, val.features, val.labels, shift)[1], false_alarm)


def triplet_terms(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-anchor `max(0, margin + cos(a, n) − cos(a, p))` for unit vectors."""
    return F.relu(margin + (anchors * negatives).sum(-1) - (anchors * positives).sum(-1))


def batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Hardest positive and hardest negative inside the batch, per anchor."""
    sims = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_pos = sims.masked_fill(~same | eye, 2.0).min(dim=1).values
    hardest_neg = sims.masked_fill(same, -2.0).max(dim=1).values
    return F.relu(margin + hardest_neg - hardest_pos)


def batch_all(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over every violating (anchor, positive, negative) triplet of the batch.

    Steadier than batch-hard from a random start, where batch-hard tends to collapse all embeddings
    onto one point (loss stuck at exactly the margin)."""
    sims = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]
    losses = F.relu(margin + sims[:, None, :] - sims[:, :, None])[valid]
    violating = losses[losses > 1e-6]
    return violating.mean() if len(violating) else losses.sum() * 0


def mine_outside(anchors: torch.Tensor, anchor_labels: torch.Tensor, pool: torch.Tensor,
                 pool_labels: torch.Tensor) -> torch.Tensor:
    """Index into the pool of each anchor's most similar window of another speaker (one product)."""
    sims = anchors @ pool.T
    sims = sims.masked_fill(anchor_labels[:, None] == pool_labels[None, :], -2.0)
    return sims.argmax(dim=1)


def sample_batch(labels: torch.Tensor, speakers: int, per_speaker: int, rng: np.random.Generator,
                 sources: torch.Tensor | None = None) -> torch.Tensor:
    """`speakers` × `per_speaker` rows; with `sources` (`copy_sources`), half as many windows, each in two of its
    copies, so that every batch asks for the same embedding of a window clean and degraded."""
    chosen = rng.choice(int(labels.max()) + 1, size=speakers, replace=False)
    rows = []
    for label in chosen:
        candidates = torch.nonzero(labels == int(label)).flatten().numpy()
        windows = np.unique(sources[candidates].numpy()) if sources is not None else candidates
        if len(windows) == len(candidates):  # one copy of each window (or no pairing asked for)
            rows.append(rng.choice(candidates, size=per_speaker, replace=len(candidates) < per_speaker))
            continue
        for window in rng.choice(windows, size=per_speaker // 2, replace=len(windows) < per_speaker // 2):
            copies = torch.nonzero(sources == int(window)).flatten().numpy()
            rows.append(rng.choice(copies, size=2, replace=len(copies) < 2))
    return torch.from_numpy(np.concatenate(rows))


def copy_sources(labels: torch.Tensor, speakers: list[str], copies: int) -> torch.Tensor:
    """Row → the row of the clean window it is a copy of. `build_windows` lays each voice out as `copies` blocks of
    its windows, clean first; the non-speech classes (`~…`) have one copy of each window."""
    sources = torch.arange(len(labels))
    for label, name in enumerate(speakers):
        if name.startswith("~"):
            continue
        rows = torch.nonzero(labels == label).flatten()
        sources[rows] = rows[torch.arange(len(rows)) % (len(rows) // copies)]
    return sources


def train(args: argparse.Namespace) -> dict:
    check_false_alarm_rate(args.threshold_false_alarm)
    for option, weight in (("--distill-weight", args.distill_weight), ("--classify-weight", args.classify_weight)):
        if not 0 <= weight < math.inf:  # NaN and infinity too: either would turn every step's loss into NaN
            raise ValueError(f"{option} must be 0 or more (a finite number), not {weight}")
    if args.distill_loss != "embedding" and not args.teacher:
        raise ValueError(f"--distill-loss {args.distill_loss} needs a --teacher")
    if args.paired_copies and (args.copies < 2 or args.batch_per_speaker % 2):
        raise ValueError(f"--paired-copies needs --copies 2 or more and an even --batch-per-speaker, not "
                         f"{args.copies} and {args.batch_per_speaker}")
    check_music_share(args.music_share, "--music-share")  # before the windows are built, not minutes into it
    if args.init and args.keep_band_means:
        raise ValueError("--init with --keep-band-means: `voicewatch pretrain` trains its encoder on band-centred "
                         "features, which a net that keeps the band means never sees")
    speeds = parse_speeds(args.speeds)
    check_corpus(args.corpus)
    held_out = parse_sources(args.hold_out)
    check_sources(args.corpus, held_out)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    settings = FeatureSettings()
    architecture = Architecture(tuple(int(c) for c in args.channels.split(",")), args.kernel_size, args.embedding_dim,
                                centre_bands=(not args.keep_band_means,), pooling=args.pooling)
    teacher = load_teacher(args.teacher) if args.teacher else None
    online = isinstance(teacher, ModelTeacher)  # embeds each batch's own features; others embed clean windows up front
    if online and teacher.settings != settings:
        raise ValueError(f"--teacher {args.teacher} was trained on other features than voicewatch train computes")
    clean_teacher = None if online else teacher
    train_recipe = {"split": "train", "copies": args.copies, "seed": args.seed, "speeds": speeds,
                    "features": dataclasses.asdict(settings), "teacher": clean_teacher and clean_teacher.name}
    if args.music_share != MUSIC_SHARE:  # only then: the caches of the usual share keep their keys
        train_recipe["music_share"] = args.music_share
    data = cached(args.window_cache, cache_key(args.corpus, **train_recipe), Windows, lambda: build_windows(
        args.corpus, "train", settings, args.copies, args.seed, speeds=speeds, teacher=clean_teacher,
        music_share=args.music_share))
    data = without_sources(data, args.corpus, held_out)  # after the cache: every held-out choice shares its windows
    val = threshold_windows(args.corpus, settings, args.seed, args.window_cache, held_out)
    net = EmbedderNet(settings.n_mels, architecture)
    if args.init is not None:
        try:
            net.load_state_dict(load_encoder(args.init), strict=False)
        except RuntimeError as exc:  # shapes of another architecture
            raise ValueError(f"{args.init} does not fit --channels {args.channels}: {exc}") from None
        _LOG.info("conv blocks initialised from %s", args.init)
    head = torch.nn.Linear(architecture.embedding_dim, teacher.dim) if teacher else torch.nn.Identity()
    classifier = MarginClassifier(architecture.embedding_dim, len(data.speakers)) if args.classify_weight else None
    heads = torch.nn.ModuleDict({"head": head, **({"classifier": classifier} if classifier else {})})  # training only
    optimiser = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=args.lr, weight_decay=1e-5)
    start_step, log = 0, []
    checkpoint = Path(str(args.out) + ".train.pt")
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["net"])
        try:
            heads.load_state_dict(state.get("heads", {}))
        except RuntimeError:  # a head of another teacher or speaker count, or none where one is expected
            raise ValueError(f"{checkpoint} was trained with another --teacher or --classify-weight setting (its "
                             "training heads do not fit); resume with the settings it was trained with, or start "
                             "afresh without --resume") from None
        optimiser.load_state_dict(state["optimiser"])
        start_step = int(state["step"])
        _LOG.info("resumed at step %d", start_step)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=args.steps, last_epoch=start_step - 1)
    pool = pool_labels = None
    sources = copy_sources(data.labels, data.speakers, args.copies) if args.paired_copies else None
    memory = Memory(args.memory, architecture.embedding_dim, torch.Generator().manual_seed(args.seed)) if args.memory else None
    started = time.monotonic()
    for step in range(start_step, args.steps):
        if step % args.pool_every == 0:
            net.eval()
            rows = torch.from_numpy(rng.choice(len(data.labels), size=min(args.pool, len(data.labels)), replace=False))
            with torch.no_grad():
                pool, pool_labels, pool_rows = net(data.features[rows].float()), data.labels[rows], rows
            net.train()
        batch = sample_batch(data.labels, args.batch_speakers, args.batch_per_speaker, rng, sources)
        features = data.features[batch].float()
        embeddings = net(features)
        labels = data.labels[batch]
        inside = batch_hard(embeddings, labels, args.margin).mean() if args.mining == "hard" else batch_all(
            embeddings, labels, args.margin)
        loss = inside
        if args.mine_outside:
            negatives_rows = pool_rows[mine_outside(embeddings.detach(), labels, pool, pool_labels)]
            negatives = net(data.features[negatives_rows].float())
            same = labels[:, None] == labels[None, :]
            sims = embeddings @ embeddings.T
            eye = torch.eye(len(labels), dtype=torch.bool)
            positive_index = sims.detach().masked_fill(~same | eye, 2.0).argmin(dim=1)
            outside = triplet_terms(embeddings, embeddings[positive_index], negatives, args.margin)
            loss = loss + outside.mean()
        if teacher is not None:
            targets = teacher.embed_features(features) if online else data.targets[batch]
            if args.distill_loss == "similarity":
                loss = loss + args.distill_weight * similarity_loss(embeddings, targets)
            else:
                loss = loss + args.distill_weight * distill_loss(head, embeddings, targets)
        if classifier is not None:
            loss = loss + args.classify_weight * classifier.loss(embeddings, labels)
        if memory is not None:
            loss = loss + args.memory_weight * memory.loss(embeddings, labels, args.margin)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if memory is not None:
            memory.update(embeddings, labels)
        schedule.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            net.eval()
            eer = window_trials_eer(net, val.features, val.labels)
            net.train()
            entry = {"step": step + 1, "loss": round(float(loss.detach()), 4), "val_eer": round(eer, 4),
                     "seconds": round(time.monotonic() - started, 1)}
            log.append(entry)
            _LOG.info("%s", entry)
            state = {"net": net.state_dict(), "heads": heads.state_dict(), "optimiser": optimiser.state_dict(), "step": step + 1}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(checkpoint, buffer.getvalue())  # a kill mid-save keeps the previous checkpoint
    net.eval()
    embedder = Embedder(net, settings)
    threshold = validation_threshold(net, val, args.threshold_false_alarm)
    result = {"threshold": round(threshold, 4), "threshold_false_alarm": args.threshold_false_alarm,
              "steps": args.steps, "seed": args.seed, "train_speakers": len(data.speakers),
              "val_speakers": len(val.speakers), "val_eer": log[-1]["val_eer"] if log else None,
              "architecture": dataclasses.asdict(architecture), "mine_outside": args.mine_outside, "mining": args.mining,
              "init": str(args.init) if args.init else None, "memory": args.memory,
              "teacher": teacher.name if teacher else None, "distill_loss": args.distill_loss if teacher else None,
              "classify_weight": args.classify_weight, "speeds": list(speeds), "paired_copies": args.paired_copies,
              "music_share": args.music_share, "held_out": list(held_out)}
    embedder.save(args.out, extra=result)
    atomic_write_bytes(Path(str(args.out) + ".log.json"), json.dumps({"result": result, "log": log}, indent=1).encode())
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, help="folder made by `python -m voicewatch.training.voices`")
    parser.add_argument("--out", type=Path, required=True, help="model file to write (safetensors)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="continue from OUT.train.pt")
    parser.add_argument("--init", type=Path, help="start the conv blocks from `voicewatch pretrain` weights")
    parser.add_argument("--channels", default="128,128,128", help="Conv1d widths, one per block")
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean",
                        help="over time: global average (mean) or mean and standard deviation (mean+std)")
    parser.add_argument("--margin", type=float, default=0.3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-speakers", type=int, default=16)
    parser.add_argument("--batch-per-speaker", type=int, default=6)
    parser.add_argument("--copies", type=int, default=3, help="feature copies per window: clean + augmented")
    parser.add_argument("--speeds", default="1.0,0.88,1.12",
                        help="playback speeds of each recorded voice, each speed a pseudo-speaker of its own (1.0 first)")
    parser.add_argument("--music-share", type=float, default=MUSIC_SHARE,
                        help=f"share of augmented copies under a music bed (default {MUSIC_SHARE}); noise lies under "
                             f"{BED_SHARE} minus that share, nothing under the rest")
    parser.add_argument("--keep-band-means", action="store_true",
                        help="let the net see each window's average spectrum (the voice's, and the channel's colouring) "
                             "instead of subtracting each mel band's mean (`voicewatch fuse` can join both kinds)")
    parser.add_argument("--paired-copies", action="store_true",
                        help="draw each batch's windows in pairs of copies (clean and degraded, or two degraded)")
    parser.add_argument("--pool", type=int, default=4096, help="candidate negatives mined outside the batch")
    parser.add_argument("--pool-every", type=int, default=50, help="steps between pool refreshes")
    parser.add_argument("--mining", choices=("all", "hard"), default="all",
                        help="in-batch triplets: every violating one, or only the hardest per anchor")
    parser.add_argument("--no-mine-outside", dest="mine_outside", action="store_false",
                        help="in-batch mining only (for comparison)")
    parser.add_argument("--memory", type=int, default=0, metavar="SLOTS",
                        help="train against an external memory of this many keys (Kaiser et al. 2017); 0 = off")
    parser.add_argument("--memory-weight", type=float, default=1.0, help="weight of the memory loss (default 1)")
    parser.add_argument("--teacher", metavar="resemblyzer|MODEL[,MODEL…]",
                        help="distil from this speaker encoder as well, or from an ensemble of voicewatch models "
                             "(training only; 'resemblyzer' needs the peer extra)")
    parser.add_argument("--distill-loss", choices=("embedding", "similarity"), default="embedding",
                        help="embedding: 1 − cos(head(student), teacher); similarity: match the teacher's pairwise "
                             "cosines within the batch (no head)")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss (default 1)")
    parser.add_argument("--classify-weight", type=float, default=0.0,
                        help="weight of an additive-margin softmax over all training speakers beside the triplet loss "
                             "(training only; 0 = off)")
    add_threshold_argument(parser)
    parser.add_argument("--hold-out", metavar="SOURCE[,SOURCE…]",
                        help="leave every voice of these sources (the corpus manifest's `package`) out of training, "
                             "validation and the threshold: a fold of leave-one-source-out validation (`voicewatch loso`)")
    parser.add_argument("--window-cache", type=Path, metavar="DIR",
                        help="keep prepared training windows here and reuse them when corpus and recipe match (~2.7 GB per seed)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    result = train(args)
    print(json.dumps(result))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
