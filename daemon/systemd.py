"""sd_notify without a library: one datagram per state change on `$NOTIFY_SOCKET`."""

from __future__ import annotations

import logging
import os
import socket

_LOG = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd; does nothing when not run by systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        self._socket: socket.socket | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_interval = int(usec) / 2e6 if usec and usec.isdigit() else None
        """Seconds between watchdog pings (half of systemd's timeout), or None."""

    def notify(self, *assignments: str) -> None:
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            _LOG.warning("cannot notify systemd at %s: %s", self._address, exc)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
