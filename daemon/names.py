"""Stream and speaker names: they appear in event topics (`det.<stream>.<speaker>.`), so no dots."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Use with `fullmatch`: `$` would also match before a trailing newline."""


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} is invalid: use 1-64 characters of A-Z a-z 0-9 _ -")
    return name
