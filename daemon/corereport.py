"""What the core tells of itself: heartbeats, stream health notices, systemd's STATUS line and the gauges.

All of it reads the typed view of live streams (`StreamState`, from the core's ingest or its stream
shards alike), never the tables behind it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from voicewatch.health import HealthWatch
from voicewatch.protocol import Event

if TYPE_CHECKING:
    from voicewatch.service import Core

CORE_STREAM = "_core"
"""Stream name of the core's own `status` heartbeats."""


class CoreReport:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.health = HealthWatch(core.config.health.idle_s, core.config.health.silence_s)
        self._last_status = (time.monotonic(), 0)

    @staticmethod
    def heartbeat(uptime: float) -> Event:
        return Event(type="status", stream=CORE_STREAM, start=uptime, end=uptime, reason="heartbeat")

    def check(self) -> list[Event]:
        """Health notices for streams whose condition changed; brings the stream and frame gauges up to date."""
        core, now = self.core, time.monotonic()
        metrics, streams = core.metrics, core.intake.streams()
        notices = self.health.check(streams, now)
        for condition in ("idle", "silent"):
            metrics.unhealthy.labels(condition).set(sum(c == condition for c in self.health.reported.values()))
        metrics.count_frames(core.intake.frames, core.intake.dropped)
        metrics.streams.set(len(streams))
        for stream in streams:
            if (factor := stream.real_time_factor(now)) is not None:
                metrics.stream_rtf.labels(stream.name).set(factor)
            metrics.stream_idle.labels(stream.name).set(now - stream.last_seen)
        return notices

    def bank_metrics(self) -> None:
        bank, metrics = self.core.pipeline.bank, self.core.metrics
        metrics.bank_speakers.set(len(bank))
        metrics.bank_exemplars.set(sum(len(bank.exemplars(n)) for n in bank.names))

    def status_line(self) -> str:
        """systemd's one-line STATUS: streams, throughput since the last call, worst idle stream, drops."""
        core = self.core
        now, windows = time.monotonic(), core.pipeline.windows
        last_time, last_windows = self._last_status
        self._last_status = (now, windows)
        rate = (windows - last_windows) / (now - last_time) if now > last_time else 0.0
        streams = core.intake.streams()
        idle = max((now - stream.last_seen for stream in streams), default=0.0)
        bad, shed = sum(core.intake.dropped.values()), sum(core.windows_dropped().values())
        return (f"{len(streams)} streams, {rate:.0f} windows/s, max frame age {idle:.1f} s, "
                f"{bad} bad frames, {shed} windows dropped")
