"""Real git repositories for workspace tests: made with the `git` program, read back with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = [
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.invalid",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgSign=false",
]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`; its output (CalledProcessError with git's words when it fails)."""
    done = subprocess.run(
        ["git", *IDENTITY, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done.stdout


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A repository at `path` on branch `main` with `files` in one commit."""
    path.mkdir(parents=True)
    subprocess.run(["git", *IDENTITY, "init", "-q", str(path)], check=True)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(path, "add", "--all")
    git(path, "commit", "-q", "-m", "initial")
    return path


def show(repo: Path, rev: str, name: str) -> str:
    """The file `name` as commit `rev` holds it."""
    return git(repo, "show", f"{rev}:{name}")


def worktrees(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def branches(repo: Path, pattern: str = "*") -> list[str]:
    out = git(repo, "branch", "--list", "--format=%(refname:short)", pattern)
    return sorted(out.split())


def state(repo: Path) -> tuple[str, str, str]:
    """What a person sees of their checkout: current branch, HEAD and `git status`."""
    return (
        git(repo, "symbolic-ref", "--short", "HEAD").strip(),
        git(repo, "rev-parse", "HEAD").strip(),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
    )
