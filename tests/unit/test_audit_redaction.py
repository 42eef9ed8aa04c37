"""What the audit log records: secrets redacted, plain arguments kept, `since` understood."""

from __future__ import annotations

import secrets

import pytest

from reynolds.core.audit import (
    REDACTED,
    describe_action,
    looks_random,
    parse_since,
    redact_argv,
    redact_text,
)
from reynolds.core.models import HttpAction, PythonAction, ShellAction


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tool", "--password=hunter2"], ["tool", "--password=***"]),
        (["tool", "token=abc"], ["tool", "token=***"]),
        (
            ["env", "PGPASSWORD=x", "AWS_SECRET_ACCESS_KEY=y"],
            ["env", "PGPASSWORD=***", "AWS_SECRET_ACCESS_KEY=***"],
        ),
        (["mysql", "--password", "hunter2", "db"], ["mysql", "--password", "***", "db"]),
        (["curl", "-u", "bob:pw", "x"], ["curl", "-u", "bob:***", "x"]),
        (["curl", "-H", "Authorization: Bearer abc"], ["curl", "-H", "Authorization: ***"]),
        (
            ["curl", "https://bob:pw@host/x?token=1&page=2"],
            ["curl", "https://bob:***@host/x?token=***&page=2"],
        ),
    ],
)
def test_secret_values_are_redacted(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_long_random_strings_are_redacted_wherever_they_appear() -> None:
    key = secrets.token_urlsafe(30)
    hex_key = secrets.token_hex(20)
    assert redact_argv([key, f"--key={hex_key}", f"ghp_{key}"]) == [
        REDACTED,
        f"--key={REDACTED}",
        REDACTED,
    ]


@pytest.mark.parametrize(
    "plain",
    [
        "echo",
        "--output=/etc/x",
        "a; touch /tmp/x",
        "$(touch /tmp/y)",
        "`touch /tmp/z`",
        "/usr/local/lib/python3.11/site-packages/reynolds/core/models.py",
        "component-name-for-production",
        "my_component_build_2026_release_candidate_v2",
        "--author=someone",
    ],
)
def test_ordinary_arguments_are_kept_as_they_are(plain: str) -> None:
    assert redact_argv([plain]) == [plain]
    assert not looks_random(plain)


def test_a_message_is_redacted_word_by_word_and_cut_short() -> None:
    text = redact_text("argument '--password=abc' would start with '-'")
    assert text == "argument '--password=***' would start with '-'"
    assert len(redact_text("x " * 1000, limit=50)) == 50


def test_environment_values_never_appear_only_their_names() -> None:
    action = ShellAction.model_validate(
        {"kind": "shell", "argv": ["deploy"], "cwd": "sub", "env": {"API_KEY": "v4lue", "B": "2"}}
    )
    described = describe_action(action)
    assert described == {"argv": ["deploy"], "cwd": "sub", "env_names": ["API_KEY", "B"]}
    assert "v4lue" not in repr(described)


def test_python_and_http_actions_record_their_target_without_arguments() -> None:
    python = PythonAction.model_validate(
        {"kind": "python", "callable": "m:f", "kwargs": {"password": "p"}}
    )
    assert describe_action(python)["argv"] == ["m:f"]
    http = HttpAction.model_validate(
        {"kind": "http", "url": "http://127.0.0.1/x?api_key=k", "json": {"secret": 1}}
    )
    assert describe_action(http)["argv"] == ["GET", "http://127.0.0.1/x?api_key=***"]


def test_since_takes_durations_iso_times_and_epoch_seconds() -> None:
    now = 1_800_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("2026-11-25T10:00:00Z", now) == 1795600800.0
    assert parse_since("2026-11-25T10:00:00", now) == 1795600800.0  # UTC when unsaid
    assert parse_since("2026-11-25T11:00:00+01:00", now) == 1795600800.0
    assert parse_since("1700000000", now) == 1700000000.0
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", now)
