"""EPG context: segment events name the programme on air; a broken guide never stops detection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from daemon_harness import Daemon, demo_audio
from voicewatch.epg import Epg, parse_guide, parse_time
from voicewatch.sourceframes import FrameEncoder


def xmltv(channel: str, start: float, stop: float, title: str) -> str:
    stamp = lambda t: time.strftime("%Y%m%d%H%M%S +0000", time.gmtime(t))  # noqa: E731
    return (f'<?xml version="1.0"?><tv><channel id="{channel}"/>'
            f'<programme start="{stamp(start - 7200)}" stop="{stamp(start)}" channel="{channel}">'
            "<title>Before</title></programme>"
            f'<programme start="{stamp(start)}" stop="{stamp(stop)}" channel="{channel}"><title>{title}</title></programme>'
            f'<programme start="broken" channel="{channel}"><title>Skipped</title></programme></tv>')


def test_xmltv_times_honour_their_zone() -> None:
    assert parse_time("20261124180000 +0100") == parse_time("20261124170000 +0000") == 1795539600.0


def test_the_programme_on_air_at_a_time_is_found_and_nothing_outside() -> None:
    guide = parse_guide(xmltv("c1", 1000.0, 2000.0, "News").encode())
    assert [p.title for p in guide["c1"]] == ["Before", "News"]
    epg = Epg("unused", {"ch1": "c1"})
    epg._guide = guide
    assert epg.programme("ch1", 1500.0).title == "News"
    assert epg.programme("ch1", 2500.0) is None and epg.programme("other", 1500.0) is None
    assert epg.programme("ch1", None) is None


def push_demo(core: Daemon, stream: str) -> None:
    audio, rate = demo_audio()
    pcm = (audio * 32767).astype("<i2").reshape(-1, 1)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(core.ingest)
    encoder = FrameEncoder(stream, rate, 1, "s16le", wall=time.time())
    for start in range(0, len(pcm), rate // 10):
        push.send_multipart(encoder.encode(pcm[start:start + rate // 10], eos=start + rate // 10 >= len(pcm)))
    push.close(linger=5000)
    core.wait_for_eos(stream)


@pytest.mark.parametrize("guide", ["good", "broken", "missing"])
def test_segment_events_carry_the_programme_and_a_bad_guide_loses_only_the_context(tmp_path: Path, guide: str) -> None:
    path = tmp_path / "guide.xml"
    now = time.time()
    if guide == "good":
        path.write_text(xmltv("das-erste.de", now - 60, now + 3600, "Tagesschau"))
    elif guide == "broken":
        path.write_text("<tv><programme")
    core = Daemon(tmp_path, config={"epg": {"xmltv": str(path), "channels": {"ch1": "das-erste.de"}}})
    try:
        push_demo(core, "ch1")
    finally:
        assert core.stop() == 0
    ends = [e for e in core.events_of("ch1") if e.type == "end"]
    assert ends, "detection must go on whatever the guide"
    if guide == "good":
        assert all(e.programme["title"] == "Tagesschau" for e in ends)
    else:
        assert all(e.programme is None for e in ends) and "EPG" in core.stderr
