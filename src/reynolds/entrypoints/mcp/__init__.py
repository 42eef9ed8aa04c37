"""The MCP entrypoint (the official SDK's low-level server) over the one tool registry.

- `server`: the MCP server, built from a Backend
- `local`: the backend inside the server process (its engine)
- `remote`: the backend of `reynolds mcp`, a client of a running server's REST API
- `streamable_http`: `/mcp` in the FastAPI app; `stdio`: `reynolds mcp`

Nothing is imported here, so that `reynolds mcp` never loads the server stack.
"""
