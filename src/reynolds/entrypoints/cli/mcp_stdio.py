"""`reynolds mcp`: start the server when none answers, then serve MCP over stdio as its client."""

from __future__ import annotations

import typer

from reynolds.entrypoints.cli import lifecycle
from reynolds.entrypoints.cli.state import state


def mcp(ctx: typer.Context) -> None:
    """Serve MCP over stdio for desktop AI assistants (starts the server when needed)."""
    st = state(ctx)
    # stdout belongs to the MCP frames: whatever `start` has to say goes to stderr.
    st.out = st.err
    lifecycle.start(ctx)
    # Imported here so that the other commands never load the MCP SDK.
    from reynolds.entrypoints.mcp.stdio import run

    run(st.settings.base_url, st.settings.token())
