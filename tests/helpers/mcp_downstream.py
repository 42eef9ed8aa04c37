"""A small MCP server over stdio for the mcp action tests: run it as a script.

Its tools tell the tests what a real downstream would only show indirectly: which process
answered (`whoami`), how many calls it held at once (`overlap`), and a tool that fails
(`refuse`) and one that kills its own process the first time it is called (`die_once`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("downstream")
_held = {"now": 0, "peak": 0}


@server.tool()
def whoami() -> dict[str, Any]:
    """The pid of the process that answers."""
    return {"pid": os.getpid()}


@server.tool()
def echo(value: Any) -> dict[str, Any]:
    """`value` as it arrived."""
    return {"value": value}


@server.tool()
async def overlap(seconds: float) -> dict[str, Any]:
    """Hold the call for `seconds`; the most calls held at once so far."""
    _held["now"] += 1
    _held["peak"] = max(_held["peak"], _held["now"])
    try:
        await asyncio.sleep(seconds)
    finally:
        _held["now"] -= 1
    return {"peak": _held["peak"]}


@server.tool()
def refuse(why: str) -> str:
    """Always an error result saying `why`."""
    raise ToolError(why)


@server.tool()
def die_once(marker: str) -> dict[str, Any]:
    """Kill this process, unless `marker` exists (this creates it first)."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}


@server.tool()
def environment() -> dict[str, Any]:
    """The names of this process's environment variables, and DOWNSTREAM_GREETING."""
    return {"names": sorted(os.environ), "greeting": os.environ.get("DOWNSTREAM_GREETING")}


if __name__ == "__main__":
    server.run("stdio")
