"""The core under a service manager: the sd_notify conversation, and reload that never breaks service."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon
from voicewatch.bank import SpeakerBank
from voicewatch.plugins.replay import replay
from voicewatch.scan import segments
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING

REPO = Path(__file__).resolve().parents[1]


def notifications(sock: socket.socket, until: str, timeout: float = 60) -> list[str]:
    """Datagrams received until one contains `until`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in seen[-1]:
            return seen
    raise AssertionError(f"no {until!r} in {seen}")


def test_notify_protocol_ready_watchdog_reloading_ready_stopping_in_order(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    core = Daemon(tmp_path, env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    seen = notifications(sock, "READY=1")
    seen += notifications(sock, "WATCHDOG=1")
    core.process.send_signal(signal.SIGHUP)
    seen += notifications(sock, "RELOADING=1")
    seen += notifications(sock, "READY=1")
    assert core.stop() == 0
    seen += notifications(sock, "STOPPING=1")
    order = [next(i for i, s in enumerate(seen) if key in s) for key in ("READY=1", "WATCHDOG=1", "RELOADING=1")]
    assert order == sorted(order)
    assert any("STATUS=" in s and "streams" in s for s in seen)
    sock.close()


def test_sighup_swaps_in_a_new_bank(tmp_path: Path) -> None:
    """(Refusing corrupt files on reload: tests/test_faults.py.)"""
    bank_path = tmp_path / "bank.safetensors"
    shutil.copy(DEMO_BANK, bank_path)
    core = Daemon(tmp_path, config={"bank": {"path": str(bank_path)}})
    try:
        replay([str(DEMO_RECORDING)], core.ingest, ["kept"], speed=None)
        core.wait_for_eos("kept")
        assert [s for s in segments(core.received) if s.stream == "kept"]

        empty = SpeakerBank.load(DEMO_BANK)
        for name in empty.names:
            empty.remove(name)
        empty.save(bank_path)
        core.process.send_signal(signal.SIGHUP)
        core.wait_for_log("reloaded")
        replay([str(DEMO_RECORDING)], core.ingest, ["swapped"], speed=None)
        core.wait_for_eos("swapped")
        assert [s for s in segments(core.received) if s.stream == "swapped"] == []
    finally:
        assert core.stop() == 0
    assert "Traceback" not in core.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_files_pass_systemd_analyze_verify() -> None:
    units = sorted((REPO / "systemd").glob("*.service"))
    assert units
    result = subprocess.run(["systemd-analyze", "verify", *map(str, units)],
                            capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "voicewatch" in line]
    assert problems == [], result.stderr


def test_the_service_unit_is_hardened_and_notifies() -> None:
    unit = (REPO / "systemd" / "voicewatch.service").read_text()
    for option in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "DynamicUser=yes", "StateDirectory=voicewatch", "CapabilityBoundingSet="):
        assert option in unit
