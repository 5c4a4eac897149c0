"""Strict JSON objects: size and nesting are measured on the bytes, before anything is parsed."""

from __future__ import annotations

import pytest

from voicewatch.strictjson import StrictJsonError, depth, loads_object


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": 1}', 1),
        (b'{"a": "[[[{{{"}', 1),
        (b'{"a": "\\"[[", "b": "\\\\"}', 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "unterminated [[', 3),
        (b"[" * 5000, 5000),
        (b"]]][[[", 0),  # closes before it opens: json refuses it at the first byte
    ],
)
def test_depth_counts_brackets_outside_strings(raw: bytes, expected: int) -> None:
    assert depth(raw) == expected


def test_a_flat_object_parses() -> None:
    assert loads_object(b'{"v": 1, "x": "caf\\u00e9", "n": null}', 100, 1) == {"v": 1, "x": "café", "n": None}


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b'{"a": "' + b"x" * 5000 + b'"}', "too_large", "exceed the limit of 5000"),
        (b"[" * 90, "too_deep", "nested 90 deep"),
        (b'{"a": [1]}', "too_deep", "limit of 1"),
        (b'{"a": NaN}', "bad_json", "NaN is not JSON"),
        (b'{"a": Infinity}', "bad_json", "Infinity is not JSON"),
        (b'{"a": 1, "a": 2}', "bad_json", "'a' appears twice"),
        (b'{"a": "\xff"}', "bad_json", "not UTF-8"),
        (b"\xef\xbb\xbf{}", "bad_json", "BOM"),
        (b'"just text"', "bad_json", "not a JSON object"),
        (b'{"a": ' + b"9" * 4400 + b"}", "bad_json", "not JSON"),  # past Python's int digit limit
    ],
)
def test_refusals_name_their_reason(raw: bytes, reason: str, words: str) -> None:
    with pytest.raises(StrictJsonError, match=words) as refused:
        loads_object(raw, 5000, 1)
    assert refused.value.reason == reason
