"""Shared test helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest


def _require_service(name: str, reason: str) -> NoReturn:
    message = f"{name} is not available: {reason}"
    if os.environ.get("REYNOLDS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (REYNOLDS_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_service() -> Callable[[str, str], NoReturn]:
    """`require_service(name, reason)`: call it when a service a test needs is unreachable.
    It skips the test, or fails it when REYNOLDS_REQUIRE_SERVICES=1 (as in CI)."""
    return _require_service
