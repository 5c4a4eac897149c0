"""Strict JSON objects from untrusted peers: size and nesting are checked on the bytes, before parsing.

Python's `json` builds nested containers by recursion, so a few thousand `[` raise RecursionError
instead of a decode error. Ingest headers and control requests are therefore measured first (bytes,
depth of brackets outside strings) and only then parsed, strictly: UTF-8 only, RFC 8259 only (no
`NaN`/`Infinity`), no duplicate names, an object at the top.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
"""A JSON string, escapes included (possessive: linear on unterminated strings)."""
_BRACKETS = re.compile(rb"[][{}]")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class StrictJsonError(ValueError):
    """Why a document was refused: `reason` is `too_large`, `too_deep` or `bad_json`; the message says more."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects outside strings (`{}` is 1, `{"a": [1]}` is 2)."""
    if raw.count(b"[") + raw.count(b"{") <= 1:  # the usual flat object: no scan
        return raw.count(b"[") + raw.count(b"{")
    brackets = _BRACKETS.findall(_STRING.sub(b'""', raw))
    return max(itertools.accumulate(_STEP[b[0]] for b in brackets), default=0)


def loads_object(raw: bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The JSON object in `raw`, or StrictJsonError; nothing is parsed past the size and depth limits."""
    if len(raw) > max_bytes:
        raise StrictJsonError("too_large", f"{len(raw)} bytes exceed the limit of {max_bytes}")
    nesting = depth(raw)
    if nesting > max_depth:
        raise StrictJsonError("too_deep", f"nested {nesting} deep, more than the limit of {max_depth}")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_no_constant)
        if type(data) is dict and raw.count(b":") != len(data):  # nested pairs, a ':' in a string, or a name twice
            data = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise StrictJsonError("bad_json", f"not UTF-8: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, our hooks, integers past Python's digit limit
        raise StrictJsonError("bad_json", f"not JSON: {exc}") from None
    if type(data) is not dict:
        raise StrictJsonError("bad_json", f"not a JSON object but {type(data).__name__}")
    return data


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict, refusing a name twice (checked only when the ':' count says it may be)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        names = [name for name, _ in pairs]
        twice = next(name for index, name in enumerate(names) if name in names[:index])
        raise ValueError(f"name {twice[:40]!r} appears twice")
    return data


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")
