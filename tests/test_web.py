"""The timeline page's server: loopback by default, a token anywhere else, no cross-site requests, and a page
that loads nothing from outside the package."""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from daemon_harness import run_cli
from voicewatch.webapp import PAGE, CoreLink, build_app

TOKEN = "s3cret-token-0123456789"


def serve(token: str | None, loopback: bool) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = CoreLink(control=None, events="ipc:///nonexistent/events", log_path=None)
    server = uvicorn.Server(uvicorn.Config(build_app(link, token, loopback), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def off_loopback() -> Iterator[int]:
    """Served as it would be on a public address (bound to loopback here: tests stay on the host)."""
    yield from serve(TOKEN, loopback=False)


@pytest.fixture
def on_loopback() -> Iterator[int]:
    yield from serve(None, loopback=True)


def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
        body: bytes | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    response.read()
    return response


def test_off_loopback_every_request_needs_the_token(off_loopback: int) -> None:
    assert get(off_loopback, "/").status == 401
    assert get(off_loopback, "/api/timeline").status == 401
    assert get(off_loopback, "/static/timeline.js").status == 401
    assert get(off_loopback, "/?token=wrong-token-0123456789").status == 401
    welcome = get(off_loopback, f"/?token={TOKEN}")
    assert welcome.status == 303 and welcome.getheader("location") == "/"
    cookie = welcome.getheader("set-cookie")
    assert cookie.startswith(f"voicewatch_token={TOKEN}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert get(off_loopback, "/", {"Cookie": f"voicewatch_token={TOKEN}"}).status == 200
    assert get(off_loopback, "/api/timeline", {"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_the_page_refuses_to_serve_off_loopback_without_a_token() -> None:
    result = run_cli("web", "--address", "0.0.0.0", timeout=60)
    assert result.returncode == 2 and "web.token" in result.stderr


def test_on_loopback_other_host_names_and_cross_site_posts_are_refused(on_loopback: int) -> None:
    assert get(on_loopback, "/").status == 200
    assert get(on_loopback, "/", {"Host": f"localhost:{on_loopback}"}).status == 200
    assert get(on_loopback, "/", {"Host": "rebound.example"}).status == 403  # DNS rebinding
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert get(on_loopback, "/api/review", form, "POST", b"clip=x&verdict=reject").status == 415
    foreign = {"Content-Type": "application/json", "Origin": "http://elsewhere.example"}
    assert get(on_loopback, "/api/review", foreign, "POST", b"{}").status == 403
    own = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{on_loopback}"}
    refused = get(on_loopback, "/api/review", own, "POST", b'{"clip": "x", "verdict": "reject"}')
    assert refused.status == 400  # reaches the handler: this core has no control socket


def test_the_page_loads_nothing_from_outside_the_package(on_loopback: int) -> None:
    for asset in sorted(PAGE.iterdir()):
        text = asset.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), asset.name
        assert get(on_loopback, "/" if asset.name == "index.html" else f"/static/{asset.name}").status == 200
