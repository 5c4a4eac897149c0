"""Event topics over a real PUB/SUB pair: SUB prefixes select exactly what they name."""

from __future__ import annotations

import time

import zmq

from voicewatch.events import EventPublisher, subscription_topics
from voicewatch.protocol import Event


def test_subscription_prefixes_never_match_a_longer_stream_or_speaker_name(tmp_path) -> None:
    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/events")
    sub = context.socket(zmq.SUB)
    sub.connect(f"ipc://{tmp_path}/events")
    for topic in subscription_topics("ch3", "al", include_streams=False):
        sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    publisher = EventPublisher(pub)
    wanted = Event(type="start", stream="ch3", speaker="al", start=1.0, end=3.0, peak=0.9, mean=0.9)
    decoys = [
        Event(type="start", stream="ch30", speaker="al", start=1.0, end=3.0, peak=0.9, mean=0.9),
        Event(type="start", stream="ch3", speaker="alice", start=1.0, end=3.0, peak=0.9, mean=0.9),
        Event(type="gap", stream="ch3", start=1.0, end=3.0, reason="seq_gap"),
    ]
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:  # the subscription reaches PUB asynchronously
        publisher.publish(decoys + [wanted])
        if sub.poll(50):
            got = Event.from_message(sub.recv_multipart())
            assert got.stream == "ch3" and got.speaker == "al" and got.type == "start"
    assert got is not None
    while sub.poll(100):
        extra = Event.from_message(sub.recv_multipart())
        assert (extra.stream, extra.speaker) == ("ch3", "al")
    pub.close(linger=0)
    sub.close(linger=0)


def test_published_events_carry_increasing_ids_and_schema_version(tmp_path) -> None:
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/ids")
    sent = EventPublisher(pub, first_id=7).publish(
        [Event(type="gap", stream="a", start=0.0, end=1.0, reason="seq_gap")] * 3
    )
    assert [e.id for e in sent] == [7, 8, 9]
    topic, body = sent[0].to_message()
    assert topic == b"gap.a." and b'"v":2' in body and b'"id":7' in body
    pub.close(linger=0)


def test_heartbeats_carry_no_id_so_ids_stay_strictly_increasing() -> None:
    heartbeat = Event(type="status", stream="_core", start=5.0, end=5.0, reason="heartbeat")
    _topic, body = heartbeat.to_message()
    assert b'"id"' not in body
    assert Event.from_message([b"status._core.", body]).id is None
