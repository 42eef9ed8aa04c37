"""Failure patterns from failed attempts: signatures, messages, counts and their order."""

from __future__ import annotations

from typing import Any

import pytest

from reynolds.core.failure_patterns import (
    SIGNATURE_MAX_CHARS,
    FailedAttempt,
    action_signature,
    aggregate,
    failure_message,
    relevant_signatures,
)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"kind": "shell", "argv": ["/usr/bin/pytest", "{component}"]}, "shell:pytest {component}"),
        (
            {"kind": "python", "callable": "tasks.build:run", "kwargs": {"x": 1}},
            "python:tasks.build:run",
        ),
        (
            {
                "kind": "http",
                "method": "POST",
                "url": "https://u:pw@api.example.com:8443/v1/jobs?key=s",
            },
            "http:POST api.example.com:8443/v1/jobs",
        ),
        (
            {
                "kind": "mcp",
                "server": {"command": "/opt/bin/git-mcp", "args": ["--repo", "."]},
                "tool": "log",
            },
            "mcp:git-mcp --repo ./log",
        ),
        (
            {"kind": "mcp", "server": {"url": "http://127.0.0.1:9000/mcp"}, "tool": "t"},
            "mcp:127.0.0.1:9000/mcp/t",
        ),
        ({"kind": "mcp", "server": "git", "tool": "git_log"}, "mcp:git/git_log"),
        ({"kind": "llm", "prompt": "summarise {component}", "model": "small"}, "llm:small"),
        ({"kind": "llm", "prompt": "summarise"}, "llm:default"),
        (None, "none"),
    ],
)
def test_each_kind_of_action_has_a_short_readable_signature(
    action: dict[str, Any] | None, expected: str
) -> None:
    assert action_signature(action) == expected


def test_a_signature_hides_secret_arguments_and_is_cut() -> None:
    secret = action_signature({"kind": "shell", "argv": ["deploy", "--token", "hunter2hunter2"]})
    long = action_signature({"kind": "shell", "argv": ["echo", "x" * 500]})

    assert secret == "shell:deploy --token ***"
    assert len(long) == SIGNATURE_MAX_CHARS and long.endswith("…")


def test_the_message_is_the_last_meaningful_line_of_the_error_else_of_the_output() -> None:
    traceback = "Traceback (most recent call last):\n  ...\nValueError: bad input\n\n----\n"

    assert failure_message(traceback, "ignored") == "ValueError: bad input"
    assert failure_message("  \n", "step 1\nstep 2 failed: disk\n") == "step 2 failed: disk"
    assert failure_message(None, None) == ""


def test_messages_that_differ_only_by_a_time_or_pid_are_one_message() -> None:
    one = failure_message("2024-05-01T10:00:00Z worker pid 4242 lost its lease", "")
    two = failure_message("2025-01-31T23:59:59Z worker pid 17 lost its lease", "")

    assert one == two == "<time> worker pid <num> lost its lease"


def test_a_message_is_cut_to_200_characters() -> None:
    assert len(failure_message("error: " + "word " * 100, "")) == 200


def attempt(
    signature: str, failure_class: str, message: str, pool: str = "default", task_type: str = "t"
) -> FailedAttempt:
    return FailedAttempt(signature, pool, failure_class, message, task_type)


def test_attempts_are_counted_per_signature_and_pool_most_failures_first() -> None:
    lease = [
        failure_message(f"2024-05-0{day}T10:00:00Z worker pid {pid} lost its lease", "")
        for day, pid in ((1, 11), (2, 22), (3, 33))
    ]
    attempts = [
        attempt("shell:sync", "connection", lease[0]),
        attempt("shell:ls /x", "not_found", "ls: /x: No such file"),
        attempt("shell:sync", "timeout", "timed out"),
        attempt("shell:sync", "connection", lease[1]),
        attempt("shell:sync", "connection", lease[2], pool="devops"),
        attempt("shell:sync", "connection", "refused"),
    ]

    patterns = aggregate(attempts)

    assert [(p.signature, p.pool, p.failures) for p in patterns] == [
        ("shell:sync", "default", 4),
        ("shell:ls /x", "default", 1),
        ("shell:sync", "devops", 1),
    ]
    view = patterns[0].view()
    assert view["classes"] == {"connection": 3, "timeout": 1}
    assert view["topMessages"] == [
        {"message": "<time> worker pid <num> lost its lease", "count": 2},
        {"message": "timed out", "count": 1},
        {"message": "refused", "count": 1},
    ]
    assert view["retryable"] is True


def test_only_the_three_most_common_messages_are_kept_and_empty_ones_never() -> None:
    attempts = [attempt("s", "unknown", m) for m in ["a", "b", "b", "c", "d", "d", "d", "", ""]]

    (pattern,) = aggregate(attempts)

    assert pattern.failures == 9
    assert pattern.top_messages == (("d", 3), ("b", 2), ("a", 1))


@pytest.mark.parametrize(
    ("classes", "retryable"),
    [
        (["authentication", "authentication", "timeout"], False),
        (["validation"], False),
        (["not_found", "permission"], False),
        (["timeout", "timeout", "not_found"], True),
        (["resource"], True),
    ],
)
def test_a_pattern_is_retryable_unless_its_main_class_is_one_no_retry_cures(
    classes: list[str], retryable: bool
) -> None:
    (pattern,) = aggregate(attempt("s", c, "m") for c in classes)

    assert pattern.view()["retryable"] is retryable
    assert pattern.main_class == classes[0]


def test_the_signatures_relevant_to_a_task_are_its_own_and_those_its_type_failed() -> None:
    signed = [("shell:a", "build"), ("shell:b", "deploy"), ("shell:c", "test"), ("shell:d", None)]

    assert relevant_signatures(signed, "build", {"shell:c", "shell:z"}) == {
        "shell:a",
        "shell:c",
        "shell:z",
    }
    assert relevant_signatures(signed, "other", ()) == set()
