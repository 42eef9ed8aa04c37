"""What the audit log records: secrets redacted, plain arguments kept, `since` understood."""

from __future__ import annotations

import random
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reynolds.core.audit import (
    REDACTED,
    describe_action,
    is_secret_name,
    looks_random,
    parse_since,
    redact_argv,
    redact_element,
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
        (
            ["git", "push", "1https://u:p@h x://v:q@h"],
            ["git", "push", "1https://u:***@h x://v:***@h"],
        ),
        (["curl", "+1://u:p@h", "a://b:c://d:e@f"], ["curl", "+1://u:p@h", "a://b:c://d:***@f"]),
        (
            ["open", "h?a?page=1;token=2&api_key=3"],
            ["open", "h?a?page=1;token=***&api_key=***"],
        ),
        (["curl", "-H", "X-Auth-Token:\n  abc"], ["curl", "-H", "X-Auth-Token: ***"]),
        (["curl", "-H", "Authorization:  "], ["curl", "-H", "Authorization:  "]),
        (["say", "Basic  dXNlcjpw and BEARER\tabc"], ["say", "Basic  *** and BEARER\t***"]),
    ],
)
def test_secret_values_are_redacted(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def random_keys(chars: int, count: int, seed: int) -> list[str]:
    """Keys as generators make them (URL-safe base64), from a seeded source: the same each run."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_"
    return ["".join(rng.choice(alphabet) for _ in range(chars)) for _ in range(count)]


@pytest.mark.parametrize("chars", [40, 48, 64, 80])
def test_hardly_any_random_key_of_forty_characters_or_more_passes_for_plain_text(
    chars: int,
) -> None:
    keys = random_keys(chars, count=2000, seed=chars)
    missed = [key for key in keys if redact_argv([key]) != [REDACTED]]
    assert len(missed) / len(keys) < 0.01, missed[:3]


def test_long_random_strings_are_redacted_wherever_they_appear() -> None:
    (key,) = random_keys(40, count=1, seed=1)
    hex_key = f"{random.Random(2).getrandbits(160):040x}"
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


# The patterns as they were before they were made linear (quadratic on long inputs, so only
# short ones here): the linear ones must redact exactly what these did. The header rule is the
# one deliberate change: it now hides a value that spans several lines too.
_OLD_URL_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:)[^/@\s]*(?=@)")
_OLD_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[^=&#;\s]+)=)(?P<value>[^&#;\s]*)")
_OLD_BEARER = re.compile(r"(?P<head>\b(?:bearer|basic)\s+)\S+", re.IGNORECASE)
_OLD_HEADER = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<value>[\s\S]*\S[\s\S]*)$")
_OLD_RUN = re.compile(r"[A-Za-z0-9+_\-~]{20,}")


def old_redact_element(element: str) -> str:
    if len(element) < 20 and not re.search(r"[=:\s]", element):
        return element
    name, sep, _value = element.partition("=")
    if sep and name and not name.startswith(("http:", "https:")) and is_secret_name(name):
        return f"{name}={REDACTED}"
    header = _OLD_HEADER.match(element)
    if header and is_secret_name(header["name"]):
        return f"{header['name']}: {REDACTED}"
    text = _OLD_URL_USERINFO.sub(lambda m: m["head"] + REDACTED, element)
    text = _OLD_QUERY_PARAM.sub(
        lambda m: m["head"] + REDACTED if is_secret_name(m["name"]) else m[0], text
    )
    text = _OLD_BEARER.sub(lambda m: m["head"] + REDACTED, text)
    return _OLD_RUN.sub(lambda m: REDACTED if looks_random(m[0]) else m[0], text)


PIECES = [
    "a",
    "Z",
    "1",
    "+",
    ".",
    "-",
    "_",
    "~",
    ":",
    "/",
    "//",
    "://",
    "@",
    "?",
    "&",
    ";",
    "#",
    "=",
    " ",
    "\t",
    "\n",
    "http",
    "token",
    "Pass",
    "pwd",
    "auth",
    "bearer",
    "BASIC",
    "key",
    "k3Yq9ZpX",
    "deadbeef",
    "user",
    "x" * 7,
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=24).map("".join))
def test_the_linear_patterns_redact_exactly_what_the_backtracking_ones_did(element: str) -> None:
    assert redact_element(element) == old_redact_element(element)
