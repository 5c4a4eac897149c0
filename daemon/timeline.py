"""The event log as a timeline: segments and stream notices placed on the UTC clock, for the page and reports.

An event is placed at its wall-clock time when the source sent one (`wall_start`); otherwise at the
time the core logged it (a segment's end then, its start that long before). The log is searched by
the time events were logged, `SKEW_S` either side of the range asked for, so a source whose clock
runs ahead of or behind the core's by up to that much still shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from voicewatch.protocol import Event

SKEW_S = 600.0


@dataclasses.dataclass(frozen=True)
class Span:
    """A segment (finished, or still open) or a stream notice, placed on the UTC clock (`t0`, `t1`)."""

    kind: str
    """`segment`, `gap` or `status`."""
    stream: str
    t0: float
    t1: float
    start: float
    """Stream time, seconds."""
    end: float
    speaker: str | None = None
    peak: float | None = None
    mean: float | None = None
    clip: str | None = None
    open: bool = False
    """A segment whose `end` has not come yet."""
    reason: str | None = None
    programme: str | None = None

    @property
    def key(self) -> str:
        """The same for every event of one segment."""
        if self.kind == "segment":
            return f"{self.stream}|{self.speaker}|{self.start:.3f}"
        return f"{self.kind}|{self.stream}|{self.t0:.3f}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None}}


def place(event: Event, logged: float) -> Span:
    """An event as a span on the UTC clock."""
    duration = max(0.0, event.end - event.start)
    if event.wall_start is not None:
        t0 = event.wall_start
        t1 = event.wall_end if event.wall_end is not None else t0 + duration
    else:
        t1 = logged
        t0 = t1 - duration
    kind = "segment" if event.speaker is not None else event.type
    title = event.programme.get("title") if isinstance(event.programme, dict) else None
    return Span(kind, event.stream, round(t0, 3), round(t1, 3), event.start, event.end, event.speaker, event.peak,
                event.mean, event.clip, open=event.type in ("start", "update"), reason=event.reason, programme=title)


def read_timeline(log_path: str | os.PathLike[str], t0: float, t1: float, skew_s: float = SKEW_S) -> list[Span]:
    """Segments and notices overlapping [t0, t1] on the UTC clock, oldest first: every finished segment, every
    segment still open (its latest `start`/`update`), gaps and health notices."""
    try:
        db = sqlite3.connect(f"file:{Path(log_path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    lo, hi = t0 - skew_s, t1 + skew_s
    try:
        done = db.execute("SELECT body, logged FROM events WHERE logged BETWEEN ? AND ? AND type IN ('end', 'gap', 'status') "
                          "ORDER BY id", (lo, hi)).fetchall()
        latest = db.execute("SELECT body, logged FROM events WHERE id IN (SELECT MAX(id) FROM events WHERE logged BETWEEN ? "
                            "AND ? AND type IN ('start', 'update', 'end') GROUP BY stream, speaker) AND type != 'end'",
                            (lo, hi)).fetchall()
    except sqlite3.OperationalError:  # no log written yet
        return []
    finally:
        db.close()
    spans = [place(Event.from_dict(json.loads(body)), logged) for body, logged in done + latest]
    return sorted((s for s in spans if s.t1 >= t0 and s.t0 <= t1), key=lambda s: (s.t0, s.stream))
