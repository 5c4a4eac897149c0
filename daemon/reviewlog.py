"""Reviews, logged in the event log's sqlite database: who said what of which clip, when, and how to undo it.

Each row keeps its speaker's exact state before the review (exemplars, cohort, own threshold) and a
digest of the state after: an undo puts the state back bit for bit, and is refused when the speaker
has changed since (a later review, an enrollment), so it never throws away what came after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    clip TEXT NOT NULL,
    stream TEXT NOT NULL,
    speaker TEXT NOT NULL,
    verdict TEXT NOT NULL,
    note TEXT NOT NULL,
    windows INTEGER NOT NULL,
    added INTEGER NOT NULL,
    threshold_before REAL NOT NULL,
    threshold_after REAL NOT NULL,
    before BLOB NOT NULL,
    after_digest TEXT NOT NULL,
    undone_at REAL,
    undone_by TEXT
);
CREATE INDEX IF NOT EXISTS reviews_clip ON reviews (clip);
"""
PUBLIC = ("id", "at", "who", "clip", "stream", "speaker", "verdict", "note", "windows", "added", "threshold_before",
          "threshold_after", "undone_at", "undone_by")
"""The columns a review shows (not the stored speaker state)."""


class ReviewError(ValueError):
    pass


def digest(snapshot: bytes) -> str:
    return hashlib.sha256(snapshot).hexdigest()


@dataclasses.dataclass(frozen=True)
class Review:
    id: int
    at: float
    who: str
    clip: str
    stream: str
    speaker: str
    verdict: str
    note: str
    windows: int
    added: int
    threshold_before: float
    threshold_after: float
    undone_at: float | None
    undone_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ReviewLog:
    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        if read_only:
            self._db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, check_same_thread=False)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)

    def active(self, clip: str) -> Review | None:
        """The review of `clip` that is in effect (not undone), if any."""
        row = self._db.execute(f"SELECT {', '.join(PUBLIC)} FROM reviews WHERE clip = ? AND undone_at IS NULL",
                               (clip,)).fetchone()
        return Review(*row) if row else None

    def record(self, review: dict[str, Any], before: bytes, after: bytes, commit_after: Any) -> int:
        """Insert a review; `commit_after()` (saving the bank) runs inside the transaction, so either both
        happen or neither does."""
        columns = [c for c in PUBLIC if c not in ("id", "undone_at", "undone_by")]
        values = [review[c] for c in columns]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            marks = ", ".join("?" * (len(columns) + 2))
            cursor = self._db.execute(f"INSERT INTO reviews ({', '.join(columns)}, before, after_digest) VALUES ({marks})",
                                      [*values, before, digest(after)])
            commit_after()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return int(cursor.lastrowid)

    def get(self, review_id: int) -> tuple[Review, bytes, str]:
        """A review, the speaker's state before it, and the digest of the state after it."""
        row = self._db.execute(f"SELECT {', '.join(PUBLIC)}, before, after_digest FROM reviews WHERE id = ?",
                               (review_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no review with id {review_id}")
        return Review(*row[:-2]), row[-2], row[-1]

    def mark_undone(self, review_id: int, who: str, commit_after: Any) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("UPDATE reviews SET undone_at = ?, undone_by = ? WHERE id = ?", (time.time(), who, review_id))
            commit_after()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def recent(self, limit: int = 100, clips: list[str] | None = None) -> list[Review]:
        """The newest reviews first (optionally only of these clips)."""
        query, args = f"SELECT {', '.join(PUBLIC)} FROM reviews", []
        if clips is not None:
            query += f" WHERE clip IN ({', '.join('?' * len(clips))})"
            args = list(clips)
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [Review(*row) for row in rows]

    def close(self) -> None:
        self._db.close()
