"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition",
             every_s: float = 0.05) -> None:
    """Poll ``predicate`` every ``every_s`` seconds until it is true; fail the test naming ``what``
    after ``timeout_s`` seconds (a bounded wait: no test polls forever)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    pytest.fail(f"not within {timeout_s} s: {what}")
