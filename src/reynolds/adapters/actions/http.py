"""The `http` action runner: one request, to loopback only unless the pool lists the host.

Permission is decided from the URL before any connection is made. Redirects are not followed
(a redirect is an answer like any other), and proxies from the environment are ignored, so a
request goes to the host that was checked and nowhere else.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
from collections.abc import Collection
from datetime import UTC, datetime

import httpx

from reynolds.core.downstreams import parse_retry_after
from reynolds.core.models import HttpAction
from reynolds.services.ports import ActionContext, ActionResult

LOOPBACK_NAMES = frozenset({"localhost"})


def is_permitted(host: str, allowed_hosts: Collection[str] = ()) -> bool:
    """Whether a request may go to `host`: loopback, or listed in `allowed_hosts`."""
    host = host.lower()
    if isinstance(allowed_hosts, str):
        allowed_hosts = (allowed_hosts,)
    if host in LOOPBACK_NAMES or host in {_normalise(h) for h in allowed_hosts}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpRunner:
    """Runs `http` actions over one shared `httpx.AsyncClient`."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # trust_env=False: a proxy from the environment would be a host nobody checked.
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False
        )

    async def run(
        self, action: HttpAction, ctx: ActionContext, *, allowed_hosts: Collection[str] = ()
    ) -> ActionResult:
        """Send the request if its host is permitted; the status is the exit code."""
        try:
            url = httpx.URL(action.url)
        except httpx.InvalidURL as exc:
            return ActionResult(ok=False, reason="error", error=f"invalid URL: {exc}")
        if not is_permitted(url.host, allowed_hosts):
            return ActionResult(
                ok=False,
                reason="denied",
                error=f"http to {url.host!r} is not permitted: only loopback hosts and the "
                "hosts listed for this pool may be called",
            )
        try:
            async with asyncio.timeout(ctx.timeout_s):
                return await self._send(action, url, ctx)
        except (TimeoutError, httpx.TimeoutException):
            return ActionResult(
                ok=False,
                reason="timeout",
                error=f"no complete answer from {url.host} within {ctx.timeout_s:g} s",
            )
        except httpx.HTTPError as exc:
            return ActionResult(ok=False, reason="error", error=f"{type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, action: HttpAction, url: httpx.URL, ctx: ActionContext) -> ActionResult:
        request = self._client.build_request(
            action.method,
            url,
            json=action.json_body,
            headers=action.headers,
            timeout=httpx.Timeout(ctx.timeout_s),
        )
        response = await self._client.send(request, stream=True)
        try:
            body, received, truncated = await _read_capped(response, ctx.output_cap_bytes)
        finally:
            await response.aclose()
        output = _decode(body, response.charset_encoding, final=not truncated)
        total = received
        if truncated:
            declared = _declared_length(response)
            total = max(received, declared)
            size = f"{total}" if declared >= received else f"at least {received}"
            output += f"\n[truncated: showing the first {ctx.output_cap_bytes} of {size} bytes]"
        ok = response.is_success
        return ActionResult(
            ok=ok,
            exit_code=response.status_code,
            output=output,
            error="" if ok else f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
            output_bytes=total,
            truncated=truncated,
            retry_after_s=None
            if ok
            else parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC)),
        )


async def _read_capped(response: httpx.Response, cap_bytes: int) -> tuple[bytes, int, bool]:
    """The first `cap_bytes` of the body; reading stops once the cap is passed."""
    kept = bytearray()
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        kept += chunk[: max(cap_bytes - len(kept), 0)]
        if received > cap_bytes:
            return bytes(kept), received, True
    return bytes(kept), received, False


def _decode(body: bytes, charset: str | None, *, final: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")("replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
    # Not final when cut: a character split by the cap is dropped, not shown as garbage.
    return decoder.decode(body, final=final)


def _declared_length(response: httpx.Response) -> int:
    if "content-encoding" in response.headers:
        return 0
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _normalise(host: str) -> str:
    return host.strip().lower().removeprefix("[").removesuffix("]")
