"""Dashboard sessions: the cookie a browser keeps after typing the token once.

The cookie carries no token. It is `<expires>.<mac>`: the Unix second it expires at and the
HMAC-SHA256 of that second under the token itself, so

- the server keeps no session table, and any server with the same tokens accepts it;
- rotating or removing a token ends every session made with it;
- a cookie read off a disk neither reveals the token nor outlives `SESSION_S`.

Logging out deletes the cookie from the browser; a copy taken before stays valid until it
expires (there is no table to strike it from).

The cookie is accepted only on `GET` requests to the paths the dashboard reads
(`cookie_allowed`): its page and assets, the event streams and read-only JSON. Never on a
`POST`, a `DELETE`, `/mcp`, `/audit` or the API documentation: those need the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

SESSION_COOKIE = "reynolds_session"
CSRF_COOKIE = "reynolds_login_csrf"
SESSION_S = 12 * 3600
CSRF_S = 3600
_DOMAIN = b"reynolds-dashboard-session|"
_PAGES = re.compile(
    r"^(?:/|/dashboard/[A-Za-z0-9._-]+|/status|/tasks|/tasks/[^/]+|/tasks/[^/]+/events"
    r"|/mcp/events|/experiments|/experiments/[^/]+"
    r"|/mcp/resources/(?:agent-pools|metrics|loop-prevention|experiments))$"
)


def cookie_allowed(method: str | None, path: str) -> bool:
    """Whether the session cookie may stand for the token on this request."""
    return method == "GET" and _PAGES.match(path) is not None


def _mac(token: str, expires: int) -> str:
    return hmac.new(token.encode(), _DOMAIN + str(expires).encode(), hashlib.sha256).hexdigest()


def make_session(token: str, now_s: float) -> str:
    """A session value for `token`, valid for SESSION_S from `now_s`."""
    expires = int(now_s) + SESSION_S
    return f"{expires}.{_mac(token, expires)}"


def session_name(tokens: Mapping[str, str], value: str | None, now_s: float) -> str | None:
    """The name of the token a session value was made with, or None (unknown or expired)."""
    if not value:
        return None
    expires_text, _, given = value.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12 or not given:
        return None
    expires = int(expires_text)
    if expires <= now_s or expires > now_s + SESSION_S + 60:
        return None
    found = None
    for token, name in tokens.items():
        # Every token, each in constant time, so timing tells nothing about which one matched.
        if hmac.compare_digest(given.encode(), _mac(token, expires).encode()):
            found = name
    return found


def matching_token(tokens: Mapping[str, str], given: str) -> str | None:
    """The configured token equal to `given` (compared in constant time with each), or None."""
    found = None
    for token in tokens:
        if hmac.compare_digest(given.encode(), token.encode()):
            found = token
    return found


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def cookie_value(header: str | None, wanted: str) -> str | None:
    """One cookie's value from a `Cookie` header."""
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == wanted:
            return value.strip()
    return None


def set_cookie(name: str, value: str, max_age_s: int, secure: bool) -> str:
    """A `Set-Cookie` value: HttpOnly, SameSite=Strict, the whole site; Secure over https."""
    flags = f"; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict"
    return f"{name}={value}{flags}{'; Secure' if secure else ''}"
