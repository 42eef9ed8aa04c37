"""Cross-site protection on every route: the server's own Host, a trusted Origin, JSON bodies.

A page the user visits can make the browser talk to the server: a cross-site POST with a
`text/plain`, form or multipart body needs no preflight, and a DNS name rebound to 127.0.0.1
arrives with the attacker's `Host`. So, before anything else looks at a request:

- its `Host` must be one of the server's own names (`SiteRules.from_settings`) or listed in
  REYNOLDS_ALLOWED_HOSTS, else 421;
- a browser's `Origin`, when sent, must be the server's own, the origin of the Host it asked
  for, or listed in REYNOLDS_ALLOWED_ORIGINS, else 403;
- a request with a body (POST, PUT, PATCH) must say `Content-Type: application/json`, else 415.
  DELETE carries no body and browsers preflight it, as they do any JSON request.

The one exception is the dashboard's login form, `POST /login`: a browser posts it
form-encoded, so it must carry an `Origin` (every browser sends one on a POST) that passes the
rule above, else 403, and be `application/x-www-form-urlencoded`, else 415; its route then
checks a CSRF token.

`GET` and `HEAD /health` are exempt, so that probes and load balancers need no configuration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from reynolds.entrypoints.http.security import send_json
from reynolds.settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  # recognised, never bound here
OPEN = frozenset({("GET", "/health"), ("HEAD", "/health")})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
FORM_ROUTES = frozenset({("POST", "/login")})


def split_host(host: str) -> tuple[str, str | None]:
    """`Host` → (name, port or None), the name lower-cased and IPv6 kept in brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name.rstrip("."), port
    return host.rstrip("."), None


def _bracketed(name: str) -> str:
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def own_names(bind_host: str) -> set[str]:
    """The names the server is reached at: the bind address; every loopback name when bound
    to loopback; this machine's names too when bound to every interface."""
    names = {bind_host}
    if bind_host in LOOPBACK | WILDCARD:
        names |= LOOPBACK
    if bind_host in WILDCARD:
        hostname = socket.gethostname()
        names = (names - WILDCARD) | {hostname, socket.getfqdn()} | _addresses(hostname)
    return {_bracketed(n.lower()) for n in names}


def _addresses(hostname: str) -> set[str]:
    """The addresses this machine's name resolves to: a container's or pod's IP, by which
    service discovery (Prometheus scraping each replica) reaches it. Only the server's own
    addresses: a rebinding page arrives with its attacker's name, never one of these."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(hostname, None)}
    except OSError:
        return set()


def _listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class SiteRules:
    """Which `Host` and `Origin` values the server accepts."""

    hosts: frozenset[str]  # `name:port`, exactly (and `name` alone on port 80)
    names: frozenset[str]  # names accepted on any port (REYNOLDS_ALLOWED_HOSTS without one)
    origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> SiteRules:
        own = own_names(settings.host)
        own_hosts = {f"{n}:{settings.port}" for n in own}
        if settings.port == 80:  # browsers and clients leave the default port out
            own_hosts |= own
        origins = {f"http://{h}" for h in own_hosts}
        origins |= {o.rstrip("/").lower() for o in _listed(settings.allowed_origins)}
        hosts, names = set(own_hosts), set()
        for entry in _listed(settings.allowed_hosts):
            name, port = split_host(entry)
            if port is None:
                names.add(name)
            else:
                hosts.add(f"{name}:{port}")
        return cls(frozenset(hosts), frozenset(names), frozenset(origins))

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        name, port = split_host(host)
        if name in self.names:
            return True
        return (f"{name}:{port}" if port is not None else name) in self.hosts

    def origin_allowed(self, origin: str, host: str) -> bool:
        """A listed or own origin, or the origin of the (allowed) Host asked for: a page the
        server itself served, reached under that name."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        name, port = split_host(host)
        netloc = f"{name}:{port}" if port is not None else name
        return origin in (f"http://{netloc}", f"https://{netloc}")


class CrossSiteGuard:
    """Refuses foreign Hosts (421), foreign Origins (403) and non-JSON bodies (415) as
    JSON `{error}`, before tokens, rate limits or any route see the request."""

    def __init__(self, app: ASGIApp, rules: SiteRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        method = scope.get("method", "GET")
        if kind not in ("http", "websocket") or (method, scope["path"]) in OPEN:
            await self.app(scope, receive, send)
            return
        host, origin, content_type = _headers(scope["headers"])
        form = (method, scope["path"]) in FORM_ROUTES
        refusal = self._refusal(method, host, origin, content_type, form=form)
        if refusal is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_json(send, refusal[0], {"error": refusal[1]})

    def _refusal(
        self,
        method: str,
        host: str | None,
        origin: str | None,
        content_type: str | None,
        *,
        form: bool = False,
    ) -> tuple[int, str] | None:
        if host is None or not self.rules.host_allowed(host):
            return 421, (
                f"Host {host!r} is not a name of this server; "
                "list it in REYNOLDS_ALLOWED_HOSTS if it is (DNS rebinding protection)"
            )
        if origin is not None and not self.rules.origin_allowed(origin, host):
            return 403, (
                f"Origin {origin!r} is not allowed; "
                "list it in REYNOLDS_ALLOWED_ORIGINS if this server should trust it"
            )
        if form and origin is None:
            return 403, "the login form must come with an Origin (a browser sends one)"
        if method in WITH_BODY:
            media = (content_type or "").partition(";")[0].strip().lower()
            wanted = FORM if form else JSON
            if media != wanted:
                given = f", not {content_type!r}" if content_type else ""
                return 415, f"Content-Type must be {wanted}{given}"
        return None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    host = origin = content_type = None
    for name, value in raw:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return host, origin, content_type
