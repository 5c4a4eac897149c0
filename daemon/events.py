"""Event publishing: ids assigned in order, one PUB socket, topics that SUB prefixes select exactly."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import zmq

from voicewatch.protocol import Event

_LOG = logging.getLogger(__name__)


class EventPublisher:
    """Numbers events monotonically and sends them as `[topic, json]` on a bound PUB socket."""

    def __init__(self, socket: zmq.Socket, first_id: int = 1) -> None:
        self.socket = socket
        self.next_id = first_id
        self.published = 0

    def publish(self, events: Iterable[Event]) -> list[Event]:
        sent = []
        for event in events:
            event = dataclasses.replace(event, id=self.next_id)
            self.next_id += 1
            self.socket.send_multipart(event.to_message())
            sent.append(event)
        self.published += len(sent)
        return sent


def subscription_topics(stream: str | None, speaker: str | None, include_streams: bool = True) -> list[str]:
    """SUB prefixes for a `tail`-style filter; trailing dots keep `ch3` from matching `ch30`."""
    if speaker is not None:
        detections = [f"det.{stream}.{speaker}." if stream else "det."]
    else:
        detections = [f"det.{stream}." if stream else "det."]
    notices = [f"gap.{stream}." if stream else "gap.", f"status.{stream}." if stream else "status."]
    return detections + (notices if include_streams else [])
