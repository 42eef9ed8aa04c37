"""The controller pattern's base class; the router calls `dispatch` with the decoded request."""

from __future__ import annotations

from typing import Any


class BadRequest(Exception):
    """The request is missing a field or has a wrong value."""


class Controller:
    """Base class of a tool controller: subclasses implement `handle(self, request)`."""

    def require(self, request: dict[str, Any], *keys: str) -> Any:
        """The values of `keys` (one value for one key), or a `BadRequest` naming the missing."""
        missing = [key for key in keys if key not in request]
        if missing:
            raise BadRequest(f"missing field(s): {', '.join(missing)}")
        values = tuple(request[key] for key in keys)
        return values[0] if len(values) == 1 else values

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """What the router does: call `handle`, answering a bad request with `{"error": ...}`."""
        try:
            return self.handle(request)
        except BadRequest as exc:
            return {"error": str(exc)}
