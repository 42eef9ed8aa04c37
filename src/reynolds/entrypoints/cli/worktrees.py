"""`reynolds worktrees prune`: the worktrees task workspaces left, removed while no server runs."""

from __future__ import annotations

import asyncio

import typer
from rich.markup import escape

from reynolds.entrypoints.cli.state import state
from reynolds.errors import AlreadyRunning, WorkspaceError

worktrees_app = typer.Typer(help="Git worktrees of task workspaces.", no_args_is_help=True)


@worktrees_app.command("prune")
def prune(ctx: typer.Context) -> None:
    """Remove every worktree Reynolds made (under REYNOLDS_HOME/worktrees) and git's records of
    them, in their repositories and in each of REYNOLDS_WORKSPACE_REPOS. Branches stay. Stop
    the server first: this refuses while one holds REYNOLDS_HOME."""
    st = state(ctx)
    settings = st.settings
    # Imported here so that client commands never pay for them.
    from reynolds.adapters.git_worktrees import GitWorktrees
    from reynolds.adapters.store.lock import HomeLock
    from reynolds.services.workspaces import Workspaces

    workspaces = Workspaces(
        GitWorktrees(settings.worktrees_dir),
        root=settings.worktrees_dir,
        allowed=settings.allowed_repos,
        project=".",
    )
    try:
        with HomeLock(settings.lock_file):
            tasks, repos = asyncio.run(workspaces.prune(settings.allowed_repos))
    except AlreadyRunning:
        st.err.print(
            f"[red]error:[/] Reynolds is running on {escape(str(settings.home))}: its tasks may "
            "be using their worktrees; stop it first (reynolds stop)"
        )
        raise typer.Exit(1) from None
    except WorkspaceError as exc:
        st.err.print(f"[red]error:[/] {escape(exc.message)}")
        raise typer.Exit(1) from None
    st.out.print(f"Removed the worktrees of {len(tasks)} task(s)")
    for repo in repos:
        st.out.print(f"Pruned {escape(repo)}")
