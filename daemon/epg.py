"""EPG context from XMLTV: which programme was on a stream's channel at a detection's wall-clock time.

The guide is read from a file or an http(s) URL at start and every `refresh_s` on a background
thread; the core only looks up the last good copy. A missing, unreachable or broken guide is logged
and never stops detection: events then simply carry no programme.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import logging
import threading
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path

_LOG = logging.getLogger(__name__)
MAX_GUIDE_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Programme:
    title: str
    start: float
    """UTC epoch seconds."""
    stop: float

    def to_dict(self) -> dict[str, object]:
        return {"title": self.title, "start": self.start, "stop": self.stop}


def parse_time(text: str) -> float:
    """XMLTV time, e.g. `20261124180000 +0100`, as UTC epoch seconds."""
    text = text.strip()
    stamp, _, zone = text.partition(" ")
    moment = datetime.datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")
    offset = datetime.timedelta(0)
    if zone:
        sign = -1 if zone[0] == "-" else 1
        offset = sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return (moment - offset).replace(tzinfo=datetime.UTC).timestamp()


def parse_guide(data: bytes) -> dict[str, list[Programme]]:
    """Programmes per XMLTV channel id, sorted by start; malformed programmes are skipped."""
    root = ElementTree.fromstring(data)
    guide: dict[str, list[Programme]] = {}
    for element in root.iter("programme"):
        try:
            title = (element.findtext("title") or "").strip()
            programme = Programme(title, parse_time(element.attrib["start"]), parse_time(element.attrib["stop"]))
        except (KeyError, ValueError):
            continue
        guide.setdefault(element.attrib.get("channel", ""), []).append(programme)
    for programmes in guide.values():
        programmes.sort(key=lambda p: p.start)
    return guide


class Epg:
    def __init__(self, source: str, channels: dict[str, str], refresh_s: float = 3600.0) -> None:
        self.source = source
        self.channels = channels
        """Stream id → XMLTV channel id."""
        self.refresh_s = refresh_s
        self._guide: dict[str, list[Programme]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_forever, name="epg", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> bool:
        try:
            if "://" in self.source:
                with urllib.request.urlopen(self.source, timeout=20) as response:
                    data = response.read(MAX_GUIDE_BYTES + 1)
            else:
                data = Path(self.source).read_bytes()
            if len(data) > MAX_GUIDE_BYTES:
                raise ValueError(f"guide larger than {MAX_GUIDE_BYTES} bytes")
            guide = parse_guide(data)
        except (OSError, ValueError, ElementTree.ParseError) as exc:
            _LOG.warning("EPG %s unusable, keeping the previous guide: %s", self.source, exc)
            return False
        self._guide = guide  # one assignment: readers see the old or the new guide, never half of one
        _LOG.info("EPG: %d channels from %s", len(guide), self.source)
        return True

    def _refresh_forever(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def programme(self, stream: str, wall: float | None) -> Programme | None:
        if wall is None or stream not in self.channels:
            return None
        programmes = self._guide.get(self.channels[stream], [])
        index = bisect.bisect_right([p.start for p in programmes], wall) - 1
        if index >= 0 and programmes[index].start <= wall < programmes[index].stop:
            return programmes[index]
        return None
