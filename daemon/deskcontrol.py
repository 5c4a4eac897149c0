"""The desk's control commands (docs/control.md): fetch a clip, review it, undo a review, list reviews.

A review changes its speaker on a copy of the bank; the copy is saved atomically inside the
transaction that logs the review (with the speaker's state before), then swapped in: either the
bank file and the log both change, or neither does.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from voicewatch.bank import SpeakerBank
from voicewatch.clipstore import ClipWriter, check_clip_id, decode_flac
from voicewatch.feedback import VERDICTS, apply_feedback
from voicewatch.reviewlog import ReviewError, ReviewLog, digest


def _text(request: dict[str, Any], name: str, default: str, limit: int = 500) -> str:
    value = request.get(name, default)
    if not isinstance(value, str) or len(value) > limit:
        raise ReviewError(f"request field {name!r} must be text of at most {limit} characters")
    return value


class DeskCommands:
    """`clip`, `review`, `undo`, `reviews` against a running core (`core` is a voicewatch.service.Core)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._reviews: ReviewLog | None = None
        self.commands = {"clip": self.clip, "review": self.review, "undo": self.undo, "reviews": self.reviews}

    @property
    def clips(self) -> ClipWriter:
        if self.core.evidence is None:
            raise ReviewError("the core keeps no clips; set clips.path in its config")
        return self.core.evidence.writer

    @property
    def log(self) -> ReviewLog:
        if self._reviews is None:
            path = self.core.config.events.log_path
            if path is None:
                raise ReviewError("reviews are logged in the event log; set events.log_path in the core's config")
            self._reviews = ReviewLog(path)
        return self._reviews

    def clip(self, request: dict[str, Any]) -> dict[str, Any]:
        """The clip's FLAC file (base64) and what it holds."""
        data = self.clips.read(check_clip_id(request.get("id")))
        info, _samples = decode_flac(data)
        return {"info": info.to_dict(), "flac": base64.b64encode(data).decode()}

    def review(self, request: dict[str, Any]) -> dict[str, Any]:
        clip_id = check_clip_id(request.get("id"))
        verdict = request.get("verdict")
        if verdict not in VERDICTS:
            raise ReviewError(f"request field 'verdict' must be one of {', '.join(VERDICTS)}")
        who, note = _text(request, "who", "unknown", 100) or "unknown", _text(request, "note", "")
        earlier = self.log.active(clip_id)
        if earlier is not None:
            raise ReviewError(f"clip {clip_id} was already reviewed ({earlier.verdict}, review {earlier.id}); "
                              "undo that review first")
        info, samples = decode_flac(self.clips.read(clip_id))
        bank = self.core.pipeline.bank
        before, threshold_before = bank.snapshot(info.speaker), bank.threshold(info.speaker)
        copy = self._copy_of_bank()
        feedback = apply_feedback(copy, self.core.pipeline.embedder, info, samples, verdict, self.core.config.review)
        row = {"at": time.time(), "who": who, "clip": clip_id, "stream": info.stream, "speaker": info.speaker,
               "verdict": verdict, "note": note, "windows": feedback.windows, "added": feedback.added,
               "threshold_before": threshold_before, "threshold_after": feedback.threshold}
        review_id = self.log.record(row, before, copy.snapshot(info.speaker), commit_after=lambda: self._save(copy))
        self.core.pipeline.swap_bank(copy)  # same speakers: no segment ends
        return {"review": review_id, "clip": clip_id, "speaker": info.speaker, "verdict": verdict,
                "windows": feedback.windows, "added": feedback.added, "evicted": feedback.evicted,
                "threshold": feedback.threshold, "note": feedback.note}

    def undo(self, request: dict[str, Any]) -> dict[str, Any]:
        review_id = request.get("review")
        if not isinstance(review_id, int) or isinstance(review_id, bool) or not 0 < review_id < 2**63:
            raise ReviewError("request field 'review' must be a review id (an integer)")
        who = _text(request, "who", "unknown", 100) or "unknown"
        review, before, after_digest = self.log.get(review_id)
        if review.undone_at is not None:
            raise ReviewError(f"review {review_id} was undone already (by {review.undone_by})")
        bank = self.core.pipeline.bank
        if review.speaker not in bank or digest(bank.snapshot(review.speaker)) != after_digest:
            raise ReviewError(f"speaker {review.speaker} has changed since review {review_id} (a later review, an "
                              "enrollment, a threshold or a removal); undo the later changes first")
        copy = self._copy_of_bank()
        copy.restore(before)
        self.log.mark_undone(review_id, who, commit_after=lambda: self._save(copy))
        self.core.pipeline.swap_bank(copy)
        return {"review": review_id, "speaker": review.speaker, "threshold": copy.threshold(review.speaker)}

    def _copy_of_bank(self) -> SpeakerBank:
        if self.core.config.bank.path is None:
            raise ReviewError("the core runs on the shipped demo bank; set bank.path in the config to review")
        return self.core.pipeline.bank.copy()

    def _save(self, bank: SpeakerBank) -> None:
        """Atomically (temp file + rename): the running core swaps the same bank in right after."""
        bank.save(Path(self.core.config.bank.path))

    def reviews(self, request: dict[str, Any]) -> dict[str, Any]:
        limit = request.get("limit", 100)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
            raise ReviewError("request field 'limit' must be an integer from 1 to 10000")
        return {"reviews": [r.to_dict() for r in self.log.recent(limit)]}
