"""The source end of the ingest socket: PUSH frames to a core, losslessly or without ever blocking.

Recordings (`lossless`) wait at the high-water mark until the core has room, as replay does, and
give up after `timeout_s`. Live inputs must not stall their decoder behind a slow or absent core:
a frame that cannot be queued is dropped and counted, and since its `seq` was already used, the
core sees the hole and reports a gap.
"""

from __future__ import annotations

import logging
import time

import zmq

from voicewatch.security import CurveClient

_LOG = logging.getLogger(__name__)
LOG_EVERY_S = 10.0


class Publisher:
    def __init__(self, endpoint: str, lossless: bool, timeout_s: float = 60.0, curve: CurveClient | None = None,
                 context: zmq.Context | None = None) -> None:
        self.endpoint, self.lossless, self.timeout_s = endpoint, lossless, timeout_s
        self.sent = 0
        self.dropped = 0
        """Frames not queued because the core was behind or away (live inputs only)."""
        self._last_log = 0.0
        self._socket = (context or zmq.Context.instance()).socket(zmq.PUSH)
        if curve is not None:
            curve.secure(self._socket)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a connection the core accepted
        self._socket.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)  # before connect: no event missed
        self._socket.connect(endpoint)

    def wait_connected(self, timeout_s: float) -> bool:
        """True once the core has accepted the connection: a live publisher drops what it sends before that."""
        return bool(self._monitor.poll(int(timeout_s * 1000)))

    def send(self, frame: list[bytes]) -> bool:
        """True when queued. Lossless: raises TimeoutError when the core takes nothing for `timeout_s`."""
        try:
            self._socket.send_multipart(frame, flags=0 if self.lossless else zmq.NOBLOCK)
        except zmq.Again:
            if self.lossless:
                raise TimeoutError(f"the core at {self.endpoint} accepted no frame for {self.timeout_s:.0f} s") from None
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                _LOG.warning("the core at %s is behind or away: %d frame(s) dropped so far", self.endpoint, self.dropped)
            return False
        self.sent += 1
        return True

    def send_last(self, frame: list[bytes]) -> bool:
        """An end-of-stream frame: worth waiting for (up to `timeout_s`) even from a live input."""
        try:
            self._socket.send_multipart(frame)
        except zmq.Again:
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=int(self.timeout_s * 1000))
