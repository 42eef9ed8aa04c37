"""`reynolds worktrees prune` and `./start-orchestration.sh cleanup`: the worktrees a crashed
server left are removed, in their repositories and in every allowed one, and never while a
server runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_support import CLI_TIMEOUT_S, Server, make_server, output
from tests.helpers.git_repos import git, make_repo, worktrees

ROOT = Path(__file__).resolve().parents[2]


def left_behind(home: Path, repo: Path, task: str) -> Path:
    """A worktree as a killed server leaves it under its home."""
    path = home / "worktrees" / task / "step-a"
    path.parent.mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", f"reynolds/{task}/step-a", str(path))
    return path


def test_prune_removes_left_worktrees_and_forgets_deleted_ones(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    one = make_repo(tmp_path / "repos" / "one", {"f": "f\n"})
    two = make_repo(tmp_path / "repos" / "two", {"f": "f\n"})
    kept = left_behind(server.home, one, "a" * 32)
    # A worktree whose directory is gone already: only git's record of it is left.
    gone = left_behind(server.home, two, "b" * 32)
    subprocess.run(["rm", "-rf", str(gone.parent)], check=True)
    assert len(worktrees(two)) == 2
    done = server.run("worktrees", "prune", env={"REYNOLDS_WORKSPACE_REPOS": f"{one},{two}"})
    assert done.returncode == 0, output(done)
    assert "Removed the worktrees of 1 task(s)" in done.stdout
    assert f"Pruned {two}" in done.stdout
    assert worktrees(one) == [str(one)] and worktrees(two) == [str(two)]
    assert not kept.exists()
    assert "reynolds/" + "a" * 32 + "/step-a" in git(one, "branch", "--list")  # kept


def test_cleanup_prunes_worktrees_before_it_removes_the_state(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    repo = make_repo(tmp_path / "repos" / "app", {"f": "f\n"})
    left_behind(server.home, repo, "c" * 32)
    done = subprocess.run(
        ["bash", str(ROOT / "start-orchestration.sh"), "cleanup"],
        env={**server.env, "REYNOLDS_WORKSPACE_REPOS": str(tmp_path / "repos")},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, output(done)
    assert worktrees(repo) == [str(repo)]
    assert "Removed the worktrees of 1 task(s)" in done.stdout


def test_prune_refuses_while_a_server_runs(live_server: Server) -> None:
    done = live_server.run("worktrees", "prune")
    assert done.returncode == 1
    assert "stop it first" in output(done)
