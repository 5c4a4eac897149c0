"""CURVE encryption and authentication for every socket, and the loopback-only default.

With `security.curve: true` the core's ingest, events and control sockets are CURVE servers with
one key pair, and a ZAP handler admits only clients whose public key is in `authorized_keys`
(a folder of `*.key` certificates made by `voicewatch keys`). Everything else is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

_LOG = logging.getLogger(__name__)


def is_local(endpoint: str) -> bool:
    """ipc://, inproc:// and tcp:// on a loopback address are reachable from the host only."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_keys(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """A new CURVE key pair: `NAME.key` (public, share it) and `NAME.key_secret` (keep it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def _load_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    if not Path(path).is_file():
        raise ValueError(f"CURVE key file {path} does not exist (make one with `voicewatch keys`)")
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key (use the NAME.key_secret file)")
    return public, secret


class CurveServer:
    """Owns the ZAP authenticator and turns the core's sockets into CURVE servers."""

    def __init__(self, context: zmq.Context, secret_key: str, authorized_keys: str) -> None:
        self.public, self.secret = _load_pair(secret_key)
        if not Path(authorized_keys).is_dir():
            raise ValueError(f"security.authorized_keys {authorized_keys!r} is not a folder of client *.key files")
        self.authenticator = ThreadAuthenticator(context)
        self.authenticator.start()
        self.authenticator.configure_curve(domain="*", location=str(authorized_keys))
        _LOG.info("CURVE on: clients admitted from %s", authorized_keys)

    def secure(self, socket: zmq.Socket) -> None:
        """Call before bind."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def stop(self) -> None:
        self.authenticator.stop()


@dataclasses.dataclass(frozen=True)
class CurveClient:
    """A client's key pair and the server's public key, for `connect`."""

    server_key: str
    """The core's public certificate (`NAME.key`)."""
    client_key: str
    """This client's secret certificate (`NAME.key_secret`)."""

    def secure(self, socket: zmq.Socket) -> None:
        """Call before connect."""
        if not Path(self.server_key).is_file():
            raise ValueError(f"CURVE server key {self.server_key} does not exist")
        server_public, _ = zmq.auth.load_certificate(self.server_key)
        socket.curve_publickey, socket.curve_secretkey = _load_pair(self.client_key)
        socket.curve_serverkey = server_public


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--curve-server-key` / `--curve-client-key` for commands that connect to a core."""
    parser.add_argument("--curve-server-key", metavar="PATH", help="the core's public certificate (NAME.key)")
    parser.add_argument("--curve-client-key", metavar="PATH", help="this client's secret certificate (NAME.key_secret)")


def client_from_args(server_key: str | None, client_key: str | None) -> CurveClient | None:
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise ValueError("CURVE needs both --curve-server-key (the core's .key) and --curve-client-key (your .key_secret)")
    return CurveClient(server_key, client_key)
