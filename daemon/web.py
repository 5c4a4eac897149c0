"""`voicewatch web`: serve the live timeline page for a running core (uvicorn + webapp.py)."""

from __future__ import annotations

import argparse
import logging
import os

from voicewatch.security import add_client_arguments, client_from_args

_LOG = logging.getLogger(__name__)
TOKEN_ENV = "VOICEWATCH_WEB_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="the core's config: its control and events endpoints, its event log "
                                                "(events.log_path: the page's history) and its `web:` section")
    parser.add_argument("--address", help="address to serve on (default: web.address, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: web.port, 8090)")
    parser.add_argument("--log", metavar="PATH", help="the core's event log (default: events.log_path)")
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from voicewatch.config import ConfigError, load_config
    from voicewatch.webapp import CoreLink, build_app, is_loopback

    config = load_config(args.config)
    address = args.address or config.web.address
    port = config.web.port if args.port is None else args.port
    token = os.environ.get(TOKEN_ENV) or config.web.token
    loopback = is_loopback(address)
    if not loopback and not token:
        raise ConfigError(f"web.address {address} is reachable from other machines: set web.token (or {TOKEN_ENV}) to a "
                          "secret of at least 16 characters (docs/security.md)")
    log_path = args.log or config.events.log_path
    if log_path is None:
        _LOG.warning("no event log (events.log_path): the page shows live events only, no history")
    link = CoreLink(config.control.endpoint, config.events.endpoint, log_path,
                    client_from_args(args.curve_server_key, args.curve_client_key))
    host = f"[{address}]" if ":" in address else address
    print(f"timeline page: http://{host}:{port}/" + ("?token=…" if token else ""), flush=True)
    uvicorn.run(build_app(link, token, loopback), host=address, port=port, log_level="warning", access_log=False)
    return 0
