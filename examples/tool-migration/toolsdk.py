"""The SDK pattern: a tool is a plain function registered with `@tool(name=..., description=...)`.

The runtime calls the function with the request and turns a `ToolError` into `{"error": ...}`,
the same answer the controller pattern's router gives for a bad request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ToolError(Exception):
    """The request is missing a field or has a wrong value."""


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its public name, its description and the function behind it."""

    name: str
    description: str
    function: Handler
    module: str


_REGISTRY: dict[str, ToolSpec] = {}


def tool(*, name: str, description: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the tool `name`."""
    if not name.isidentifier():
        raise ValueError(f"tool name {name!r} must be an identifier")
    if not description.strip():
        raise ValueError(f"tool {name!r} needs a description")

    def register(function: Handler) -> Handler:
        known = _REGISTRY.get(name)
        if known is not None and known.module != function.__module__:
            raise ValueError(f"tool {name!r} is already registered by {known.module}")
        _REGISTRY[name] = ToolSpec(name, description, function, function.__module__)
        return function

    return register


def registered_tools(module: str | None = None) -> list[ToolSpec]:
    """The registered tools, all of them or those defined in `module`."""
    return [spec for spec in _REGISTRY.values() if module is None or spec.module == module]


def require(request: dict[str, Any], *keys: str) -> Any:
    """The values of `keys` (one value for one key), or a `ToolError` naming those missing."""
    missing = [key for key in keys if key not in request]
    if missing:
        raise ToolError(f"missing field(s): {', '.join(missing)}")
    values = tuple(request[key] for key in keys)
    return values[0] if len(values) == 1 else values


def call(function: Handler, request: dict[str, Any]) -> dict[str, Any]:
    """Run a tool as the runtime does: a `ToolError` becomes `{"error": message}`."""
    try:
        return function(request)
    except ToolError as exc:
        return {"error": str(exc)}
