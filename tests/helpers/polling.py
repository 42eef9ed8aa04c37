"""Bounded waits for tests: poll a condition until it holds, or fail saying what did not happen.

Each wait has a deadline, never a bare sleep: a test is as fast as the system it watches, and
says what it was waiting for when that never comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

POLL_INTERVAL_S = 0.02

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout_s: float = 10.0,
    what: str | None = None,
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Poll `probe` until it answers something truthy and return that; AssertionError naming
    `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(what or f"not true within {timeout_s} s")
        time.sleep(interval_s)


async def wait_for_async(
    probe: Callable[[], T | None], timeout_s: float = 10.0, what: str | None = None
) -> T:
    """`wait_for` on an event loop: polls without blocking it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(what or f"not true within {timeout_s} s")
        await asyncio.sleep(POLL_INTERVAL_S)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(POLL_INTERVAL_S)
    return True


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """`wait_until` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        await asyncio.sleep(POLL_INTERVAL_S)
    return True
