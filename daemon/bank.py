"""SpeakerBank: enrolled exemplar embeddings per speaker, scored for a whole batch in one product.

Score of a window for a speaker = mean of its top-k (default 5) cosine similarities with that
speaker's exemplars (the mean of all when there are fewer). Exemplars are kept as one padded
(speakers × exemplars × dim) tensor so a tick's batch is scored with one matmul and one top-k.

A speaker may also hold an impostor cohort: windows the desk rejected as not this person (with the
score shift the model gave each), from which its threshold is recomputed (`cohort_threshold`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from voicewatch.atomicfile import atomic_write_bytes
from voicewatch.names import check_name

COHORT_FALSE_ALARM_SHARE = 0.0
"""Share of a speaker's cohort windows its threshold lets through: none, so a rejected false alarm stays rejected."""
COHORT_MARGIN = 0.01
"""How far above that cohort score the threshold goes: windows cut from a clip score the same audio within
1e-5 of the stream's windows (int16 audio, the stream's window grid); an f32le source's audio, stored as
int16, moves scores by more, still well under this."""


def cohort_threshold(cohort_scores: torch.Tensor, floor: float, false_alarm_share: float = COHORT_FALSE_ALARM_SHARE,
                     margin: float = COHORT_MARGIN) -> float:
    """A speaker's threshold from its impostor cohort's scores (their score shift included): `margin` above the
    score that `false_alarm_share` of them reach, never below `floor` (the bank's default threshold), at most 1."""
    if cohort_scores.numel() == 0:
        return floor
    reached = float(torch.quantile(cohort_scores.double(), 1.0 - false_alarm_share))
    return min(1.0, max(floor, reached + margin))


def _canonical(data: bytes) -> bytes:
    """safetensors bytes with their header's keys sorted: safetensors writes the metadata in hash-map order, which
    changes from call to call, and the same bank must give the same bytes (a review's undo restores it bit for bit)."""
    length = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned, as safetensors keeps it
    return len(header).to_bytes(8, "little") + header + data[8 + length:]


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of safetensors bytes (an 8-byte header length, then the JSON header)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__", {})


BANK_FORMAT = "voicewatch.bank"
BANK_VERSION = 1


class BankError(ValueError):
    """A bank file that is unreadable, of another format, or made with a different embedder."""


class UnknownSpeakerError(KeyError, ValueError):
    """A name the bank does not hold (a KeyError for lookups, a ValueError for the command line)."""

    def __str__(self) -> str:
        return f"no speaker named {self.args[0]!r} in the bank"


DEFAULT_THRESHOLD = 0.7
"""Detection threshold (mean of the top-5 cosines) of a model that does not carry its own, and of a bank made
without one."""


class SpeakerBank:
    def __init__(self, embedder_id: str, dim: int, default_threshold: float = DEFAULT_THRESHOLD, top_k: int = 5) -> None:
        self.embedder_id = embedder_id
        self.dim = dim
        self.default_threshold = default_threshold
        self.top_k = top_k
        self._exemplars: dict[str, torch.Tensor] = {}
        self._thresholds: dict[str, float] = {}
        self._cohorts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        """Per speaker: rejected windows' embeddings [C, D] and their score shifts [C]."""
        self._packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # -- contents ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._exemplars)

    def __len__(self) -> int:
        return len(self._exemplars)

    def __contains__(self, name: object) -> bool:
        return name in self._exemplars

    def exemplars(self, name: str) -> torch.Tensor:
        if name not in self._exemplars:
            raise UnknownSpeakerError(name)
        return self._exemplars[name]

    def threshold(self, name: str) -> float:
        if name not in self._exemplars:
            raise UnknownSpeakerError(name)
        return self._thresholds.get(name, self.default_threshold)

    def thresholds(self) -> torch.Tensor:
        """[S] thresholds in `names` order."""
        return torch.tensor([self.threshold(n) for n in self.names], dtype=torch.float32)

    def enroll(self, name: str, embeddings: torch.Tensor, threshold: float | None = None) -> None:
        """Add exemplars (unit vectors [N, D]) to a speaker, creating it when new."""
        check_name("speaker", name)
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim or embeddings.shape[0] == 0:
            raise ValueError(f"expected [N, {self.dim}] embeddings, got {tuple(embeddings.shape)}")
        embeddings = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1)
        old = self._exemplars.get(name)
        self._exemplars[name] = embeddings if old is None else torch.cat([old, embeddings])
        if threshold is not None:
            self.set_threshold(name, threshold)
        self._packed = None

    def copy(self) -> SpeakerBank:
        """An independent bank with the same contents (exemplar tensors are never mutated, so shared)."""
        twin = SpeakerBank(self.embedder_id, self.dim, self.default_threshold, self.top_k)
        twin._exemplars = dict(self._exemplars)
        twin._thresholds = dict(self._thresholds)
        twin._cohorts = dict(self._cohorts)
        return twin

    def set_threshold(self, name: str, threshold: float) -> None:
        if name not in self._exemplars:
            raise UnknownSpeakerError(name)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} is outside the cosine range [-1, 1]")
        self._thresholds[name] = float(threshold)

    def remove(self, name: str) -> None:
        if name not in self._exemplars:
            raise UnknownSpeakerError(name)
        del self._exemplars[name]
        self._thresholds.pop(name, None)
        self._cohorts.pop(name, None)
        self._packed = None

    # -- feedback from reviews --------------------------------------------------------------
    def cohort(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A speaker's impostor cohort: embeddings [C, D] and score shifts [C] (C may be 0)."""
        if name not in self._exemplars:
            raise UnknownSpeakerError(name)
        return self._cohorts.get(name, (torch.zeros(0, self.dim), torch.zeros(0)))

    def add_to_cohort(self, name: str, embeddings: torch.Tensor, shifts: torch.Tensor, limit: int) -> None:
        """Add rejected windows to a speaker's cohort, keeping its newest `limit`."""
        old, old_shifts = self.cohort(name)
        embeddings = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1)
        self._cohorts[name] = (torch.cat([old, embeddings])[-limit:], torch.cat([old_shifts, shifts.float().cpu()])[-limit:])

    def speaker_scores(self, name: str, embeddings: torch.Tensor) -> torch.Tensor:
        """[N] top-k mean scores of `embeddings` against one speaker (no score shift)."""
        exemplars = self.exemplars(name)
        sims = embeddings.float().cpu() @ exemplars.T
        return sims.topk(min(self.top_k, len(exemplars)), dim=-1).values.mean(dim=-1)

    def recompute_threshold(self, name: str) -> float:
        """Set a speaker's threshold from its cohort (`cohort_threshold`); a speaker without one keeps its own."""
        embeddings, shifts = self.cohort(name)
        if len(embeddings):
            self.set_threshold(name, cohort_threshold(self.speaker_scores(name, embeddings) + shifts, self.default_threshold))
        return self.threshold(name)

    def keep_most_typical(self, name: str, limit: int) -> int:
        """Bound a speaker's exemplars to `limit`: the least typical (lowest cosine to the speaker's mean exemplar)
        leave first; returns how many left."""
        exemplars = self.exemplars(name)
        excess = len(exemplars) - limit
        if excess <= 0:
            return 0
        centre = torch.nn.functional.normalize(exemplars.mean(dim=0), dim=0)
        keep = (exemplars @ centre).argsort(descending=True, stable=True)[:limit].sort().values
        self._exemplars[name] = exemplars[keep]
        self._packed = None
        return excess

    def snapshot(self, name: str) -> bytes:
        """One speaker's exemplars, cohort and own threshold, exactly, as safetensors bytes (review undo)."""
        embeddings, shifts = self.cohort(name)
        threshold = self._thresholds.get(name)
        return _canonical(safetensors.torch.save(
            {"exemplars": self.exemplars(name).contiguous(), "cohort": embeddings.contiguous(),
             "cohort_shift": shifts.contiguous()},
            metadata={"name": name, "threshold": "" if threshold is None else repr(threshold),
                      "has_cohort": str(name in self._cohorts)}))

    def restore(self, snapshot: bytes) -> str:
        """Put a speaker back exactly as `snapshot` holds it; returns its name."""
        tensors = safetensors.torch.load(snapshot)
        meta = _metadata(snapshot)
        name, threshold, has_cohort = meta["name"], meta["threshold"], meta["has_cohort"] == "True"
        self._exemplars[check_name("speaker", name)] = tensors["exemplars"]
        if threshold:
            self._thresholds[name] = float(threshold)
        else:
            self._thresholds.pop(name, None)
        if has_cohort:
            self._cohorts[name] = (tensors["cohort"], tensors["cohort_shift"])
        else:
            self._cohorts.pop(name, None)
        self._packed = None
        return name

    # -- scoring ----------------------------------------------------------------------------
    def _pack(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flat exemplars [S*E, D], padding mask [S, E], k per speaker [S]) on `device`."""
        if self._packed is None or self._packed[0].device != device:
            counts = torch.tensor([len(e) for e in self._exemplars.values()], dtype=torch.long)
            width = int(counts.max()) if len(counts) else 0
            padded = torch.zeros(len(counts), width, self.dim)
            for row, exemplars in enumerate(self._exemplars.values()):
                padded[row, : len(exemplars)] = exemplars
            valid = torch.arange(width)[None, :] < counts[:, None]
            k = counts.clamp(max=self.top_k)
            self._packed = (padded.reshape(-1, self.dim).to(device), valid.to(device), k.to(device))
        return self._packed

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[B, D] unit vectors → [B, S] top-k mean cosine scores, speakers in `names` order."""
        batch = embeddings.shape[0]
        if not self._exemplars:
            return embeddings.new_zeros(batch, 0)
        flat, valid, k = self._pack(embeddings.device)
        speakers, width = valid.shape
        sims = (embeddings @ flat.T).view(batch, speakers, width)
        sims = sims.masked_fill(~valid, float("-inf"))
        top = sims.topk(min(self.top_k, width), dim=-1).values  # [B, S, k_max], descending
        keep = torch.arange(top.shape[-1], device=top.device)[None, None, :] < k[None, :, None]
        return torch.where(keep, top, 0.0).sum(dim=-1) / k

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the bank atomically; the format holds tensors and JSON only."""
        names = self.names
        counts = torch.tensor([len(self._exemplars[n]) for n in names], dtype=torch.long)
        width = int(counts.max()) if names else 0
        padded = torch.zeros(len(names), width, self.dim)
        for row, name in enumerate(names):
            padded[row, : counts[row]] = self._exemplars[name]
        meta = {
            "format": BANK_FORMAT,
            "version": str(BANK_VERSION),
            "embedder_id": self.embedder_id,
            "dim": str(self.dim),
            "default_threshold": repr(self.default_threshold),
            "top_k": str(self.top_k),
            "speakers": json.dumps([{"name": n, "threshold": self._thresholds.get(n)} for n in names]),
        }
        tensors = {"exemplars": padded, "counts": counts}
        if any(name in self._cohorts for name in names):  # optional: readers that predate cohorts ignore them
            cohort_counts = torch.tensor([len(self.cohort(n)[0]) for n in names], dtype=torch.long)
            cohort = torch.zeros(len(names), int(cohort_counts.max()), self.dim)
            cohort_shift = torch.zeros(len(names), int(cohort_counts.max()))
            for row, name in enumerate(names):
                cohort[row, : cohort_counts[row]], cohort_shift[row, : cohort_counts[row]] = self.cohort(name)
            tensors |= {"cohort": cohort, "cohort_shift": cohort_shift, "cohort_counts": cohort_counts}
        atomic_write_bytes(Path(path), _canonical(safetensors.torch.save(tensors, metadata=meta)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder_id: str | None = None) -> SpeakerBank:
        """Load a bank; with `embedder_id`, refuse a bank enrolled with another model."""
        try:
            with safetensors.safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                exemplars = handle.get_tensor("exemplars")
                counts = handle.get_tensor("counts")
                cohorts = ({key: handle.get_tensor(key) for key in ("cohort", "cohort_shift", "cohort_counts")}
                           if "cohort_counts" in handle.keys() else None)
        except FileNotFoundError:
            raise BankError(f"bank file {path} does not exist (create it with `voicewatch enroll`)") from None
        except Exception as exc:
            raise BankError(f"bank file {path} is not a readable bank: {exc}") from None
        if meta.get("format") != BANK_FORMAT or meta.get("version") != str(BANK_VERSION):
            raise BankError(f"{path} is not a voicewatch bank of version {BANK_VERSION}")
        if embedder_id is not None and meta.get("embedder_id") != embedder_id:
            raise BankError(
                f"{path} was enrolled with embedder {meta.get('embedder_id')}, but the loaded model is "
                f"{embedder_id}; re-enroll the speakers with this model"
            )
        try:
            bank = cls(meta["embedder_id"], int(meta["dim"]), float(meta["default_threshold"]), int(meta["top_k"]))
            speakers = json.loads(meta["speakers"])
            if exemplars.shape[0] != len(speakers) or counts.shape[0] != len(speakers):
                raise ValueError("speaker list and tensors disagree")
            for row, speaker in enumerate(speakers):
                name = check_name("speaker", speaker["name"])
                bank._exemplars[name] = exemplars[row, : int(counts[row])].float().clone()  # stored unit vectors, as saved
                if speaker.get("threshold") is not None:
                    bank.set_threshold(name, float(speaker["threshold"]))
                if cohorts is not None and int(cohorts["cohort_counts"][row]):
                    size = int(cohorts["cohort_counts"][row])
                    bank._cohorts[name] = (cohorts["cohort"][row, :size].float().clone(),
                                           cohorts["cohort_shift"][row, :size].float().clone())
        except (KeyError, TypeError, ValueError) as exc:
            raise BankError(f"{path} is a damaged bank: {exc}") from None
        return bank
