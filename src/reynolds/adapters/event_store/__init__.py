"""Event stores for the MCP Streamable HTTP transport, so a client that lost its connection
resumes a stream with Last-Event-ID: in process (the default) and Redis (REYNOLDS_REDIS_URL)."""
