"""Stream health: a `status` event when a stream stops sending, or sends only silence, and when it recovers."""

from __future__ import annotations

import dataclasses

from voicewatch.ingest import Ingest
from voicewatch.protocol import Event


@dataclasses.dataclass
class HealthWatch:
    idle_s: float
    """No frame for this long → `status` with reason `idle`."""
    silence_s: float
    """Only near-silent frames for this long → `status` with reason `silent`."""
    reported: dict[str, str] = dataclasses.field(default_factory=dict)
    """The condition last reported per stream (`idle` / `silent`)."""

    def check(self, ingest: Ingest, now: float) -> list[Event]:
        events = []
        for stream, buffer in ingest.buffers.items():
            if now - ingest.last_seen[stream] >= self.idle_s:
                condition = "idle"
            elif now - ingest.last_sound[stream] >= self.silence_s:
                condition = "silent"
            else:
                condition = "ok"
            if condition != self.reported.get(stream, "ok"):
                events.append(Event(type="status", stream=stream, start=round(buffer.time, 6), end=round(buffer.time, 6),
                                    reason=condition if condition != "ok" else "recovered"))
                self.reported[stream] = condition
        for stream in [s for s in self.reported if s not in ingest.buffers]:
            del self.reported[stream]
        return events

    def unhealthy(self) -> dict[str, str]:
        return {stream: condition for stream, condition in self.reported.items() if condition != "ok"}
