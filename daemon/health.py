"""Stream health: a `status` event when a stream stops sending, or sends only silence, and when it recovers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from voicewatch.ingest import StreamState
from voicewatch.protocol import Event


@dataclasses.dataclass
class HealthWatch:
    idle_s: float
    """No frame for this long → `status` with reason `idle`."""
    silence_s: float
    """Only near-silent frames for this long → `status` with reason `silent`."""
    reported: dict[str, str] = dataclasses.field(default_factory=dict)
    """The condition last reported per stream (`idle` / `silent`)."""

    def check(self, streams: Sequence[StreamState], now: float) -> list[Event]:
        """Notices for the streams whose condition changed since the last check; streams gone are forgotten."""
        events = []
        for stream in streams:
            if now - stream.last_seen >= self.idle_s:
                condition = "idle"
            elif now - stream.last_sound >= self.silence_s:
                condition = "silent"
            else:
                condition = "ok"
            if condition != self.reported.get(stream.name, "ok"):
                events.append(Event(type="status", stream=stream.name, start=round(stream.time, 6),
                                    end=round(stream.time, 6), reason=condition if condition != "ok" else "recovered"))
                self.reported[stream.name] = condition
        live = {stream.name for stream in streams}
        for name in [s for s in self.reported if s not in live]:
            del self.reported[name]
        return events

    def unhealthy(self) -> dict[str, str]:
        return {stream: condition for stream, condition in self.reported.items() if condition != "ok"}
