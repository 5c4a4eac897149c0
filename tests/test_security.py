"""CURVE on: only clients with an allowed key can push, subscribe or control; off: loopback by default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from daemon_harness import Daemon, run_cli
from voicewatch.config import Config
from voicewatch.control import ControlError, request
from voicewatch.plugins.replay import replay
from voicewatch.protocol import Event
from voicewatch.security import CurveClient, is_local, make_keys
from voicewatch.shipped import DEMO_RECORDING
from voicewatch.sourceframes import file_frames


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    core_public, core_secret = make_keys(tmp_path / "core", "core")
    _, friend = make_keys(tmp_path / "friend", "friend")
    (allowed).mkdir()
    (tmp_path / "friend" / "friend.key").rename(allowed / "friend.key")
    _, stranger = make_keys(tmp_path / "stranger", "stranger")
    return {"core_public": core_public, "core_secret": core_secret, "allowed": allowed, "friend": friend,
            "stranger": stranger}


@pytest.fixture
def secure_core(tmp_path: Path, keys: dict[str, Path]):
    core = Daemon(tmp_path, config={"security": {"curve": True, "secret_key": str(keys["core_secret"]),
                                                 "authorized_keys": str(keys["allowed"])}},
                  wait=False)
    yield core
    if core.process.poll() is None:
        assert core.stop() == 0
    assert "Traceback" not in core.stderr


def subscriber(core: Daemon, curve: CurveClient | None) -> zmq.Socket:
    sub = zmq.Context.instance().socket(zmq.SUB)
    if curve is not None:
        curve.secure(sub)
    sub.connect(core.events)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    return sub


def first_event(sub: zmq.Socket, timeout: float) -> Event | None:
    if sub.poll(int(timeout * 1000)):
        return Event.from_message(sub.recv_multipart())
    return None


def test_an_allowed_client_works_and_others_get_nothing(secure_core: Daemon, keys: dict[str, Path]) -> None:
    friend = CurveClient(str(keys["core_public"]), str(keys["friend"]))
    stranger = CurveClient(str(keys["core_public"]), str(keys["stranger"]))
    friend_sub, stranger_sub, plain_sub = (subscriber(secure_core, c) for c in (friend, stranger, None))
    assert first_event(friend_sub, 60) is not None  # heartbeats reach the friend
    assert first_event(stranger_sub, 1.0) is None and first_event(plain_sub, 0.5) is None

    assert request(secure_core.control, {"cmd": "status"}, curve=friend)["ok"]
    for curve in (stranger, None):
        with pytest.raises(ControlError, match="no core answered"):
            request(secure_core.control, {"cmd": "status"}, timeout_s=1.0, curve=curve)

    for name, curve in (("plain", None), ("stranger", stranger)):
        with pytest.raises(TimeoutError):
            replay([str(DEMO_RECORDING)], secure_core.ingest, [name], speed=None, timeout_s=1.0, curve=curve)
    replay([str(DEMO_RECORDING)], secure_core.ingest, ["friend"], speed=None, curve=friend)
    deadline = time.monotonic() + 60
    seen = set()
    while "friend" not in seen and time.monotonic() < deadline:
        event = first_event(friend_sub, 1.0)
        if event is not None and event.reason == "eos":
            seen.add(event.stream)
    assert seen == {"friend"}
    assert request(secure_core.control, {"cmd": "status"}, curve=friend)["frames"] == len(
        list(file_frames(DEMO_RECORDING, "x")))
    for sub in (friend_sub, stranger_sub, plain_sub):
        sub.close(linger=0)


def test_curve_without_keys_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("security: {curve: true}\n")
    result = run_cli("run", "-c", str(config), timeout=60)
    assert result.returncode == 2 and "security.secret_key" in result.stderr


def test_keys_command_writes_a_public_and_a_private_certificate(tmp_path: Path) -> None:
    result = run_cli("keys", str(tmp_path), "me", timeout=60)
    assert result.returncode == 0
    assert (tmp_path / "me.key").exists() and oct((tmp_path / "me.key_secret").stat().st_mode)[-3:] == "600"


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://[::1]:5555", True), ("tcp://localhost:1", True),
    ("ipc:///run/voicewatch/ingest", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://192.0.2.1:5555", False),
])
def test_local_endpoints_are_recognised(endpoint: str, local: bool) -> None:
    assert is_local(endpoint) is local


def test_default_endpoints_are_loopback_only() -> None:
    config = Config()
    assert all(is_local(e) for e in (config.ingest.endpoint, config.events.endpoint, config.control.endpoint))
    assert config.metrics.address == "127.0.0.1"
