"""The MCP entrypoint (the official SDK's low-level server) over the one tool registry.

- `server`: the MCP server, built on a `ToolHost` (`tool_host`): what serves the tools
- `in_process`: the host inside the server process (its engine)
- `proxy`: the host of `reynolds mcp`, a client of a running server's REST API
- `streamable_http`: `/mcp` in the FastAPI app; `stdio`: `reynolds mcp`

Nothing is imported here, so that `reynolds mcp` never loads the server stack.
"""
