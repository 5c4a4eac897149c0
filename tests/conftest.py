"""The `slow` marker for tests that build, install, train or drive a browser (docs/testing.md): `pytest -m "not slow"`
is the quick loop. One list, by test id, says which tests are slow."""

from __future__ import annotations

import pytest

SLOW = (
    "tests/test_packaging.py::",  # builds and installs the wheel and the sdist
    "tests/test_train_command.py::",  # trains and pre-trains small models
    "tests/test_bench.py::",  # runs the benchmark
    "tests/test_timeline_page.py::",  # the page in headless Chromium
    "tests/test_evaluate.py::test_eval_over_several_splits_reports_each_split_and_their_means",
    "tests/test_evaluate.py::test_the_batched_resemblyzer_peer_embeds_as_resemblyzer_does",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
