"""The durable event log: every numbered event is committed to sqlite (WAL) before it is published.

Ids continue from the log across restarts, so they are monotonic for the life of the log, and a
subscriber that missed something catches up from it (`voicewatch tail --since ID`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from voicewatch.protocol import Event

_LOG = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    logged REAL NOT NULL,
    type TEXT NOT NULL,
    stream TEXT NOT NULL,
    speaker TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_stream ON events (stream, id);
CREATE INDEX IF NOT EXISTS events_logged ON events (logged);
"""


class EventLog:
    def __init__(self, path: str | os.PathLike[str], retention_days: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_days = retention_days
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a crashed process loses nothing; see docs/events.md
        self._db.executescript(SCHEMA)
        self.last_id = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]

    def append(self, events: Iterable[Event]) -> list[Event]:
        """Number `events` after the last logged id and commit them in one transaction."""
        numbered = []
        now = time.time()
        rows = []
        for event in events:
            self.last_id += 1
            event = dataclasses.replace(event, id=self.last_id)
            numbered.append(event)
            rows.append((event.id, now, event.type, event.stream, event.speaker, json.dumps(event.to_dict())))
        if rows:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                self.last_id -= len(rows)
                raise
        return numbered

    def prune(self) -> int:
        """Delete events older than the retention period; returns how many."""
        if self.retention_days is None:
            return 0
        cutoff = time.time() - self.retention_days * 86400
        return self._db.execute("DELETE FROM events WHERE logged < ?", (cutoff,)).rowcount

    def close(self) -> None:
        self._db.close()


def read_events(path: str | os.PathLike[str], since: int = 0, stream: str | None = None,
                start: float | None = None, end: float | None = None) -> Iterator[Event]:
    """Events with id > `since` (optionally one stream, stream-time range), oldest first; read-only."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        query, args = "SELECT body FROM events WHERE id > ?", [since]
        if stream is not None:
            query, args = query + " AND stream = ?", [*args, stream]
        for (body,) in db.execute(query + " ORDER BY id", args):
            event = Event.from_dict(json.loads(body))
            if start is not None and event.end < start or end is not None and event.start > end:
                continue
            yield event
    finally:
        db.close()
