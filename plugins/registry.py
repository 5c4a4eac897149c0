"""Sources by name: the built-in ones plus whatever the `voicewatch.plugins` entry-point group adds.

Config and the command line name a source; nothing resolves arbitrary dotted paths.
"""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import entry_points
from typing import Protocol

_LOG = logging.getLogger(__name__)
GROUP = "voicewatch.plugins"


class Source(Protocol):
    """A source plugin: a process that publishes ingest frames to a core."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class PluginError(LookupError):
    pass


def available() -> dict[str, object]:
    """Entry points of the group, by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(name: str) -> Source:
    """Instantiate the source registered as `name`; a clear error when it is unknown or broken."""
    points = available()
    if name not in points:
        raise PluginError(f"no source plugin named {name!r}; installed: {', '.join(sorted(points)) or 'none'}")
    try:
        factory = points[name].load()  # type: ignore[attr-defined]
    except ImportError as exc:
        raise PluginError(f"source plugin {name!r} cannot be imported: {exc}") from None
    return factory()
