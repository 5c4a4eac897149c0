"""Load shedding: windows that are already too late are dropped whole, counted, and reported as gaps.

Only windows whose source sent wall-clock time can be late: their age is `now - wall end`. Replays
without wall time are never shed (they wait at the high-water mark instead, and lose nothing).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

from voicewatch.windows import Item, StreamBreak, Window

_LOG = logging.getLogger(__name__)


class LoadShedder:
    def __init__(self, max_lag_s: float | None) -> None:
        self.max_lag_s = max_lag_s
        self.dropped: collections.Counter[str] = collections.Counter()
        """Windows dropped, per stream."""
        self._runs: dict[str, StreamBreak] = {}
        """Runs of dropped windows not yet reported, per stream."""

    def shed(self, items: Sequence[Item], now: float) -> list[Item]:
        """`items` without late windows; a run of dropped windows is reported as one `overload` break
        before the stream's next kept item, or by `flush`. Called as frames arrive, so late windows
        are let go at once instead of piling up."""
        if self.max_lag_s is None:
            return list(items)
        kept: list[Item] = []
        for item in items:
            if isinstance(item, Window) and self._late(item, now):
                self.dropped[item.stream] += 1
                run = self._runs.get(item.stream)
                self._runs[item.stream] = StreamBreak(item.stream, "overload", run.start if run else item.start,
                                                      item.end, run.wall_start if run else item.wall_start)
                continue
            if item.stream in self._runs:
                kept.append(self._runs.pop(item.stream))
            kept.append(item)
        return kept

    def flush(self) -> list[Item]:
        """The breaks of all runs still open (end of a tick)."""
        runs, self._runs = list(self._runs.values()), {}
        return runs

    def _late(self, window: Window, now: float) -> bool:
        assert self.max_lag_s is not None
        return window.wall_start is not None and now - (window.wall_start + window.end - window.start) > self.max_lag_s
