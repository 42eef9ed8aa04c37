"""The MCP servers a pool declares (`mcpServers` in agents.yaml), and whether an `mcp` action
may call the tool it names on one of them.

A server is a command Reynolds starts and talks to over stdio, or a Streamable HTTP URL; its
`tools` list, when given, is all that may be called on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from reynolds.core.environment import env_name_problem

# A server's name: what an action's `server` says and what its downstream key carries.
SERVER_NAME = r"^[A-Za-z0-9_.-]{1,100}$"
_TOKEN_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
DEFAULT_MAX_CONCURRENCY = 8


class _Server(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    # None: any tool the server offers.
    tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None
    # Calls in flight to this server from one process at most; the rest wait their turn.
    max_concurrency: int = Field(DEFAULT_MAX_CONCURRENCY, ge=1, le=1024)


class McpStdioServer(_Server):
    """A server Reynolds starts: `command` with `args`, in the contract's child environment
    plus `env`."""

    command: str = Field(min_length=1, max_length=4096)
    args: list[Annotated[str, Field(max_length=65536)]] = Field(
        default_factory=list, max_length=4096
    )
    env: dict[str, Annotated[str, Field(max_length=65536)]] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _safe_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            problem = env_name_problem(key)
            if problem is not None:
                raise ValueError(f"{key}: {problem}")
        return env


class McpHttpServer(_Server):
    """A server at a Streamable HTTP URL; `tokenFile` names a file in the secrets folder whose
    content is sent as `Authorization: Bearer …`."""

    url: str = Field(max_length=8192, pattern=r"^https?://")
    token_file: str | None = None

    @field_validator("token_file")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not _TOKEN_FILE.match(value) or value.strip(".") == ""):
            raise ValueError("must name a file in the secrets folder, e.g. tracker_token.txt")
        return value


McpServer = McpStdioServer | McpHttpServer


def check_server_names(servers: Mapping[str, McpServer]) -> None:
    """ValueError naming the first server whose name an action could not give."""
    for name in servers:
        if not re.match(SERVER_NAME, name):
            raise ValueError(f"server name {name!r} may use letters, digits and _ . - only")


def refusal(servers: Mapping[str, McpServer], server: str, tool: str, pool: str) -> str | None:
    """Why the `pool` may not call `tool` on `server`, or None when it may."""
    spec = servers.get(server)
    if spec is None:
        declared = ", ".join(sorted(servers)) or "none"
        return f"MCP server {server!r} is not declared for the {pool} pool (declared: {declared})"
    if spec.tools is not None and tool not in spec.tools:
        return (
            f"tool {tool!r} of MCP server {server!r} is not in its tools list for the {pool} pool"
        )
    return None
