"""Event publishing: ids assigned in order, logged durably first, sent on one PUB socket."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import zmq

from voicewatch.eventlog import EventLog
from voicewatch.protocol import Event

_LOG = logging.getLogger(__name__)


class EventPublisher:
    """Numbers events monotonically (continuing the log's ids), logs them, then publishes them."""

    def __init__(self, socket: zmq.Socket, log: EventLog | None = None, first_id: int = 1) -> None:
        self.socket = socket
        self.log = log
        self.next_id = log.last_id + 1 if log is not None else first_id
        self.published = 0

    def publish(self, events: Iterable[Event]) -> list[Event]:
        if self.log is not None:
            numbered = self.log.append(events)
        else:
            numbered = []
            for event in events:
                numbered.append(dataclasses.replace(event, id=self.next_id))
                self.next_id += 1
        for event in numbered:
            self.socket.send_multipart(event.to_message())
        self.published += len(numbered)
        return numbered

    def announce(self, event: Event) -> None:
        """Send an unnumbered, unlogged notice (heartbeats): nothing to catch up on later."""
        self.socket.send_multipart(event.to_message())


def subscription_topics(stream: str | None, speaker: str | None, include_streams: bool = True) -> list[str]:
    """SUB prefixes for a `tail`-style filter; trailing dots keep `ch3` from matching `ch30`."""
    if speaker is not None:
        detections = [f"det.{stream}.{speaker}." if stream else "det."]
    else:
        detections = [f"det.{stream}." if stream else "det."]
    notices = [f"gap.{stream}." if stream else "gap.", f"status.{stream}." if stream else "status."]
    return detections + (notices if include_streams else [])
