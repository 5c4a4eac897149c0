"""Which audio track of which service each output stream decodes, from the PSI as it is now.

Services are named by service id or by the SDT's service name; within a service the track is
chosen by PID or by a list of ISO-639 languages in order of preference. When the chosen track
disappears (a PMT change), the policy says whether to take the best remaining one (`next`) or
to send nothing until it comes back (`wait`; the core then reports the stream idle).
"""

from __future__ import annotations

import dataclasses
import logging
import re

from voicewatch.plugins.tspsi import PsiMonitor, Service, Track

_LOG = logging.getLogger(__name__)
POLICIES = ("next", "wait")


class SelectionError(ValueError):
    """A service or track that the multiplex does not carry."""


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    key: str
    """Service id (decimal or 0x hex) or service name."""
    stream: str
    """Stream id in the ingest frames and events."""

    @classmethod
    def parse(cls, text: str) -> ServiceSpec:
        """`KEY=STREAM` or just `KEY` (the stream is then named after it)."""
        key, _, stream = text.rpartition("=") if "=" in text else (text, "", "")
        stream = stream or re.sub(r"[^A-Za-z0-9_-]", "_", key)[:64]
        if not key or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
            raise ValueError(f"--service {text!r}: expected SERVICE_ID_OR_NAME[=STREAM], STREAM of A-Z a-z 0-9 _ -")
        return cls(key, stream)

    def matches(self, service: Service) -> bool:
        if re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", self.key):
            return service.service_id == int(self.key, 0)
        return service.name is not None and service.name.casefold() == self.key.casefold()


@dataclasses.dataclass(frozen=True)
class TrackPolicy:
    pid: int | None = None
    languages: tuple[str, ...] = ()
    on_loss: str = "next"
    """`next`: the best remaining track; `wait`: nothing until the chosen track is back."""

    def choose(self, service: Service) -> Track | None:
        tracks = service.tracks
        if self.pid is not None:
            chosen = [t for t in tracks if t.pid == self.pid]
        elif self.languages:
            chosen = [t for lang in self.languages for t in tracks if t.language == lang.lower()]
        else:
            chosen = list(tracks)
        if chosen:
            return chosen[0]
        return tracks[0] if tracks and self.on_loss == "next" else None


def plan(monitor: PsiMonitor, specs: list[ServiceSpec], policy: TrackPolicy, default_stream: str,
         strict: bool = False) -> dict[str, Track]:
    """Stream → track now. `strict` (at start): a service or track that cannot be found is an error."""
    services = list(monitor.services.values())
    if not specs:
        first = next((s for s in services if s.tracks), None)
        found = {default_stream: policy.choose(first)} if first else {}
        if strict and not first:
            raise SelectionError("the multiplex carries no service with an audio track")
    else:
        found = {}
        for spec in specs:
            service = next((s for s in services if spec.matches(s)), None)
            if service is None:
                if strict:
                    raise SelectionError(f"no service {spec.key!r} in the multiplex; services: {describe(services)}")
                continue
            found[spec.stream] = policy.choose(service)
    if strict:
        for stream, track in found.items():
            if track is None or (policy.pid is not None and track.pid != policy.pid):
                raise SelectionError(f"stream {stream}: no audio track with {_wanted(policy)}; "
                                     f"services: {describe(services)}")
            if policy.languages and track.language not in [lang.lower() for lang in policy.languages]:
                _LOG.warning("stream %s: no track in %s; taking PID %d (%s)", stream, "/".join(policy.languages),
                             track.pid, track.language or "no language")
    return {stream: track for stream, track in found.items() if track is not None}


def describe(services: list[Service]) -> str:
    return "; ".join(f"{s.service_id} {s.name or '?'} (" + ", ".join(
        f"PID {t.pid} {t.codec} {t.language or '-'}" for t in s.tracks) + ")" for s in services) or "none"


def _wanted(policy: TrackPolicy) -> str:
    return f"PID {policy.pid}" if policy.pid is not None else f"language {'/'.join(policy.languages) or 'any'}"
