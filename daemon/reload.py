"""Reload: the next config, model and bank swapped into a running core whole, or not at all.

A reload (SIGHUP, or the control API after a bank change on disk) builds everything new first; any
failure keeps the running state serving. Sections whose sockets, buffers or processes are built at
start (`RESTART_ONLY`) keep their running values until a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicewatch.bank import SpeakerBank
from voicewatch.config import Config
from voicewatch.embedder import Embedder
from voicewatch.protocol import Event
from voicewatch.shipped import DEMO_BANK

if TYPE_CHECKING:
    from voicewatch.service import Core

_LOG = logging.getLogger(__name__)
RESTART_ONLY = ("ingest", "events", "control", "metrics", "health", "security", "epg", "windows", "processing",
                "clips")
"""Config sections a reload cannot change (sockets, buffers and worker processes are built from them)."""

Loader = Callable[[], tuple[Config, Embedder, SpeakerBank]]
"""Builds the next (config, model, bank) on reload; raises when any of them is invalid."""


def load_model_and_bank(config: Config) -> tuple[Embedder, SpeakerBank]:
    """Load (and cross-check) the embedder and bank a config names; raises on any problem."""
    embedder = Embedder.load(config.model.path, device=config.model.device)
    bank = SpeakerBank.load(config.bank.path or DEMO_BANK, embedder_id=embedder.model_id)
    if config.bank.threshold is not None:
        bank.default_threshold = config.bank.threshold
    return embedder, bank


def reload(core: Core, loader: Loader) -> list[Event]:
    """Swap a new model and bank (and detector settings) into `core` atomically, or keep the old ones; the
    `end` events of segments whose speaker the new bank no longer has."""
    core.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        config, embedder, bank = loader()
    except Exception as exc:  # any failure to build the new state keeps the old one serving
        _LOG.error("reload refused, keeping the running config, model and bank: %s", exc)
        core.notifier.ready(core.report.status_line())
        return []
    for section in RESTART_ONLY:
        if getattr(config, section) != getattr(core.config, section):
            _LOG.warning("reload: changes under %r take effect only after a restart", section)
    core.config = dataclasses.replace(config, **{name: getattr(core.config, name) for name in RESTART_ONLY})
    pipeline = core.pipeline
    pipeline.detector.config = config.detector
    if core.shards is not None and embedder.settings != pipeline.embedder.settings:
        _LOG.warning("reload: the new model's front end differs; restarting the stream shards (their streams get gaps)")
        core.shards.restart_all(embedder.settings)
    pipeline.embedder = embedder
    ended = pipeline.swap_bank(bank)
    _LOG.info("reloaded: model %s, %d speakers", embedder.model_id, len(bank))
    core.notifier.ready(core.report.status_line())
    return ended
