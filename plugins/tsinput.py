"""Where a transport stream comes from: a file, stdin, udp:// (unicast or multicast) or http(s)://.

Each input is a plain byte reader (`read(n)`, no `seek`) that PyAV demuxes from; every byte also
goes through the `PsiMonitor`. A network input that delivers nothing for `dead_after_s` raises
`InputStalled`, so the caller can report it and reconnect with `Backoff`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import select
import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, Protocol

from voicewatch.plugins.tspsi import PsiMonitor

_LOG = logging.getLogger(__name__)
UDP_BUFFER = 4 << 20
"""Receive buffer asked of the kernel for UDP: a few seconds of a full multiplex."""


class InputStalled(OSError):
    """A live input that delivered no byte for too long (dead tuner, dropped connection)."""


class RawInput(Protocol):
    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


def is_network(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("udp", "http", "https") and "://" in url


def is_live(url: str) -> bool:
    """Network inputs and stdin run at the broadcast's pace; files as fast as the core takes them."""
    return url == "-" or is_network(url)


class FileInput:
    def __init__(self, file: BinaryIO, stall_s: float | None = None) -> None:
        self._file, self._stall_s = file, stall_s

    def read(self, size: int) -> bytes:
        if self._stall_s is not None and hasattr(self._file, "fileno"):
            ready, _, _ = select.select([self._file], [], [], self._stall_s)
            if not ready:
                raise InputStalled(f"no data on stdin for {self._stall_s:.0f} s")
        read1 = getattr(self._file, "read1", None)
        return read1(size) if read1 is not None else self._file.read(size)

    def close(self) -> None:
        if self._file is not sys.stdin.buffer:
            self._file.close()


class UdpInput:
    """One socket bound to the URL's port; joins the group when the host is a multicast address."""

    def __init__(self, url: str, stall_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port
        if port is None:
            raise ValueError(f"{url}: a udp:// URL needs a port, e.g. udp://239.1.1.1:1234")
        address = ipaddress.ip_address(host) if host else ipaddress.ip_address("0.0.0.0")
        local = urllib.parse.parse_qs(parts.query).get("localaddr", ["0.0.0.0"])[0]
        """The interface address to join a multicast group on (FFmpeg's `?localaddr=`); default: the system's."""
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
        self._socket.bind((str(address), port))
        if address.is_multicast:
            if family == socket.AF_INET:
                request = struct.pack("4s4s", address.packed, socket.inet_aton(local))
                self._socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
            else:
                request = struct.pack("16sI", address.packed, 0)
                self._socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
        self._socket.settimeout(stall_s)
        self._url, self._stall_s = url, stall_s
        _LOG.info("listening on %s", url)

    def read(self, size: int) -> bytes:
        try:
            return self._socket.recv(max(size, 65536))  # a datagram is read whole or lost
        except TimeoutError:
            raise InputStalled(f"no datagram on {self._url} for {self._stall_s:.0f} s") from None

    def close(self) -> None:
        self._socket.close()


class HttpInput:
    def __init__(self, url: str, stall_s: float) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "voicewatch-dvb"})
        self._response = urllib.request.urlopen(request, timeout=stall_s)  # noqa: S310 - http(s) only, checked
        self._url, self._stall_s = url, stall_s

    def read(self, size: int) -> bytes:
        try:
            return self._response.read1(size)
        except TimeoutError:
            raise InputStalled(f"{self._url} sent nothing for {self._stall_s:.0f} s") from None

    def close(self) -> None:
        self._response.close()


def open_input(url: str, stall_s: float) -> RawInput:
    """The raw byte reader for `url`; OSError (file missing, connection refused…) when it cannot open."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if url == "-":
        return FileInput(sys.stdin.buffer, stall_s)
    if scheme == "udp":
        return UdpInput(url, stall_s)
    if scheme in ("http", "https"):
        try:
            return HttpInput(url, stall_s)
        except urllib.error.HTTPError as exc:
            raise OSError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"{url}: {exc.reason}") from None
    if scheme:
        raise ValueError(f"{url}: unsupported input; use a file, -, udp://, http:// or https://")
    return FileInput(open(os.fspath(url), "rb"))


class TappedReader:
    """What PyAV reads: the raw input's bytes, each passed through the PSI monitor first."""

    def __init__(self, raw: RawInput, monitor: PsiMonitor) -> None:
        self.raw, self.monitor = raw, monitor
        self.bytes_read = 0

    def read(self, size: int) -> bytes:
        data = self.raw.read(size)
        self.bytes_read += len(data)
        self.monitor.feed(data)
        return data


class Backoff:
    """Exponential backoff with jitter: waits grow `base`·2ⁿ up to `cap`, each drawn from [½, 1]× that."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** self.attempt)
        self.attempt += 1
        return ceiling * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0
