"""Failure classes from what failed attempts said."""

from __future__ import annotations

import pytest

from reynolds.core.failures import classify, retryable


@pytest.mark.parametrize(
    ("reason", "exit_code", "error", "status", "expected"),
    [
        ("timeout", None, "", None, "timeout"),
        ("exit", 1, "curl: (7) Failed to connect: Connection refused", None, "connection"),
        ("exit", 1, "psql: FATAL: password authentication failed for user", None, "authentication"),
        ("exit", 1, "cat: /x: Permission denied", None, "permission"),
        ("exit", 1, "ls: cannot access 'x': No such file or directory", None, "not_found"),
        ("not_found", 127, "nosuch: command not found", None, "not_found"),
        ("exit", 2, "usage: tool [-h] --name NAME", None, "validation"),
        ("exit", 1, "OSError: [Errno 28] No space left on device", None, "resource"),
        ("http", None, "", 429, "resource"),
        ("http", None, "", 401, "authentication"),
        ("http", None, "", 404, "not_found"),
        ("exit", 3, "something odd happened", None, "unknown"),
    ],
)
def test_each_class_is_recognised(
    reason: str, exit_code: int | None, error: str, status: int | None, expected: str
) -> None:
    assert classify(reason, exit_code, error, status) == expected


def test_only_classes_that_can_change_on_retry_are_retried() -> None:
    assert not retryable("authentication") and not retryable("validation")
    assert not retryable("not_found") and not retryable("permission")
    assert retryable("timeout") and retryable("connection") and retryable("unknown")
