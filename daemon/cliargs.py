"""Argument types for the command line: a bad value is refused by argparse with one line, before any work.

Each type raises argparse.ArgumentTypeError with what was wrong and what is expected, so that
`voicewatch … --connect PATH` or `--min-speech abc` ends in `voicewatch CMD: error: …`, never in a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import NoReturn

ENDPOINT_SCHEMES = ("tcp", "ipc")


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def endpoint(text: str) -> str:
    """A ZeroMQ endpoint a client can connect to: `tcp://HOST:PORT` or `ipc://PATH`."""
    scheme, separator, rest = text.partition("://")
    if not separator or scheme not in ENDPOINT_SCHEMES or not rest:
        raise argparse.ArgumentTypeError(f"{text!r} is not an endpoint: use tcp://HOST:PORT or ipc://PATH")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"{text!r} is not a TCP endpoint: use tcp://HOST:PORT (port 1-65535)")
    return text


def existing_file(text: str) -> str:
    """A path to a readable regular file."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return text


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def finite_float(text: str) -> float:
    return _float(text)


def positive_int(text: str) -> int:
    """An integer > 0."""
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def fail(command: str, message: str, code: int = 2) -> int:
    """Print the one-line error of a command that could not do its work; returns the exit status."""
    print(f"voicewatch {command}: error: {message}", file=sys.stderr)
    return code
