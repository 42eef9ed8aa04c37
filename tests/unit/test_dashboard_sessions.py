"""The dashboard's session values and where the cookie may stand for the token."""

from __future__ import annotations

import pytest

from reynolds.entrypoints.http import sessions

TOKENS = {"tok-alpha": "default", "tok-beta": "ci"}
NOW_S = 1_800_000_000.0


def test_a_session_names_the_token_it_was_made_with_and_does_not_contain_it() -> None:
    value = sessions.make_session("tok-beta", NOW_S)
    assert "tok-beta" not in value
    assert sessions.session_name(TOKENS, value, NOW_S + 60) == "ci"


def test_rotating_the_token_ends_its_sessions() -> None:
    value = sessions.make_session("tok-alpha", NOW_S)
    assert sessions.session_name({"tok-new": "default"}, value, NOW_S + 1) is None


def test_an_expired_tampered_or_far_future_session_is_refused() -> None:
    value = sessions.make_session("tok-alpha", NOW_S)
    expires, _, mac = value.partition(".")
    assert sessions.session_name(TOKENS, value, NOW_S + sessions.SESSION_S + 1) is None
    assert sessions.session_name(TOKENS, f"{int(expires) + 1}.{mac}", NOW_S) is None
    assert sessions.session_name(TOKENS, f"{expires}.{mac[:-1]}0", NOW_S) is None
    far = NOW_S + 10 * sessions.SESSION_S
    assert sessions.session_name(TOKENS, sessions.make_session("tok-alpha", far), NOW_S) is None
    for junk in ("", ".", "abc.def", "1.", "-5.ab", "9" * 40 + ".ab", None):
        assert sessions.session_name(TOKENS, junk, NOW_S) is None


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/dashboard/app.js",
        "/status",
        "/tasks",
        "/tasks/abc",
        "/tasks/abc/events",
        "/mcp/events",
        "/experiments",
        "/experiments/e1",
        "/mcp/resources/metrics",
        "/mcp/resources/loop-prevention",
    ],
)
def test_the_cookie_stands_for_the_token_on_the_dashboards_reads(path: str) -> None:
    assert sessions.cookie_allowed("GET", path)
    for method in ("POST", "DELETE", "PUT", "PATCH", "HEAD"):
        assert not sessions.cookie_allowed(method, path)


@pytest.mark.parametrize(
    "path",
    [
        "/mcp",
        "/mcp/",
        "/mcp/tools",
        "/mcp/tools/list_tasks",
        "/mcp/resources/tasks/abc",
        "/mcp/resources",
        "/audit",
        "/openapi.json",
        "/docs",
        "/metrics",
        "/tasks/abc/cancel",
        "/dashboard/../openapi.json",
        "/experiments/e1/report.png",
    ],
)
def test_the_cookie_is_never_accepted_elsewhere(path: str) -> None:
    assert not sessions.cookie_allowed("GET", path)
    assert not sessions.cookie_allowed("POST", path)


def test_the_cookie_is_http_only_strict_and_secure_over_https() -> None:
    plain = sessions.set_cookie("c", "v", 60, False)
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Path=/" in plain
    assert "Secure" not in plain
    assert "; Secure" in sessions.set_cookie("c", "v", 60, True)


def test_a_cookie_header_is_read_by_name() -> None:
    header = "a=1; reynolds_session=2.ff ; other=x=y"
    assert sessions.cookie_value(header, "reynolds_session") == "2.ff"
    assert sessions.cookie_value(header, "other") == "x=y"
    assert sessions.cookie_value(header, "missing") is None
    assert sessions.cookie_value(None, "a") is None
