"""EPG context: segment events name the programme on air; a broken guide never stops detection."""

from __future__ import annotations

import http.server
import threading
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


class GuideServer(http.server.ThreadingHTTPServer):
    """Serves `self.guide` (bytes) at /xmltv, or 404 when it is None."""

    def __init__(self, guide: bytes | None) -> None:
        self.guide = guide

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N802, N805 - http.server's names
                if self.guide is None:
                    handler.send_error(404)
                    return
                handler.send_response(200)
                handler.end_headers()
                handler.wfile.write(self.guide)

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/xmltv"


def test_a_refresh_takes_a_new_guide_and_keeps_the_last_good_one_when_the_next_is_broken(tmp_path: Path) -> None:
    server = GuideServer(None)
    try:
        epg = Epg(server.url, {"ch1": "c1"})
        assert epg.refresh() is False and epg.programme("ch1", 1500.0) is None  # not there yet: no context
        server.guide = xmltv("c1", 1000.0, 2000.0, "News").encode()
        assert epg.refresh() is True and epg.programme("ch1", 1500.0).title == "News"
        server.guide = b"<tv><programme"
        assert epg.refresh() is False and epg.programme("ch1", 1500.0).title == "News"
    finally:
        server.shutdown()
        server.server_close()
    assert Epg(str(tmp_path / "missing.xml"), {"ch1": "c1"}).refresh() is False


@pytest.mark.parametrize("guide", ["good", "broken"])
def test_segment_events_carry_the_programme_and_a_bad_guide_loses_only_the_context(tmp_path: Path, guide: str) -> None:
    now = time.time()
    server = GuideServer(xmltv("das-erste.de", now - 60, now + 3600, "Tagesschau").encode())
    source = server.url
    if guide == "broken":
        source = str(tmp_path / "guide.xml")
        Path(source).write_text("<tv><programme")
    core = Daemon(tmp_path, config={"epg": {"xmltv": source, "channels": {"ch1": "das-erste.de"}}})
    try:
        push_demo(core, "ch1")
    finally:
        assert core.stop() == 0
        server.shutdown()
        server.server_close()
    ends = [e for e in core.events_of("ch1") if e.type == "end"]
    assert ends, "detection must go on whatever the guide"
    if guide == "good":
        assert all(e.programme["title"] == "Tagesschau" for e in ends)
    else:
        assert all(e.programme is None for e in ends) and "EPG" in core.stderr
