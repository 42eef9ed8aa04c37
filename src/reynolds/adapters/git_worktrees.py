"""Task workspaces in git: worktrees, branches, commits and merges, through the `git` program
(argv, never a shell). Blocking calls: the workspaces service runs them in threads.

Every call turns off what could make git slow or run the repository's code behind our back:
automatic gc, hooks, a pager, prompts for credentials. Nothing is ever pushed, and the
repository's own checkout (its index, files and current branch) is never touched: all work
happens in worktrees under `root`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from reynolds.core.worktrees import Change, Identity
from reynolds.errors import WorkspaceError

GIT_TIMEOUT_S = 300.0
_SETTINGS = (
    "gc.auto=0",
    "core.hooksPath=/dev/null",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "commit.gpgSign=false",
)
_QUIET = tuple(arg for setting in _SETTINGS for arg in ("-c", setting))
_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}
_DIFFSTAT_CHARS = 4000


class GitWorktrees:
    """Worktrees of any repository, kept under `root/<task id>/<slug>`."""

    def __init__(self, root: Path, git: str = "git") -> None:
        self.root = root
        self.git = git
        self._env = {**os.environ, **_ENV}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, repo: str) -> threading.Lock:
        """The lock of one repository's worktree records (adding, pruning, deleting branches
        read or write them all)."""
        with self._locks_lock:
            return self._locks.setdefault(os.path.realpath(repo), threading.Lock())

    # -- reading ------------------------------------------------------------------------

    def available(self) -> bool:
        return shutil.which(self.git) is not None

    def toplevel(self, path: str) -> str | None:
        """The repository's top directory (its main worktree) holding `path`, or None."""
        if not os.path.isdir(path):
            return None
        out = self._run(["-C", path, "rev-parse", "--path-format=absolute", "--git-common-dir"])
        if out.returncode != 0:
            return None
        common = Path(os.path.realpath(out.stdout.strip()))
        if common.name != ".git":
            return None  # a bare repository: no checkout to protect, but none to work from
        return str(common.parent)

    def commit_of(self, repo: str, rev: str) -> str | None:
        out = self._run(
            [
                "-C",
                repo,
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                f"{rev}^{{commit}}",
            ]
        )
        return out.stdout.strip() if out.returncode == 0 else None

    def branch_exists(self, repo: str, name: str) -> bool:
        out = self._run(["-C", repo, "show-ref", "--verify", "--quiet", f"refs/heads/{name}"])
        return out.returncode == 0

    def valid_branch(self, name: str) -> bool:
        return self._run(["check-ref-format", "--branch", name]).returncode == 0

    def head(self, path: str) -> str:
        return self._ok(["-C", path, "rev-parse", "HEAD"]).strip()

    def changed_files(self, path: str, old: str, new: str) -> list[str]:
        out = self._ok(["-C", path, "diff", "--name-only", "-z", old, new])
        return [f for f in out.split("\0") if f]

    def worktrees(self, repo: str) -> list[str]:
        """The paths of the repository's worktrees, its own first."""
        out = self._ok(["-C", repo, "worktree", "list", "--porcelain"])
        return [
            line[len("worktree ") :] for line in out.splitlines() if line.startswith("worktree ")
        ]

    # -- branches -------------------------------------------------------------------------

    def reserve_branch(self, repo: str, name: str, commit: str) -> bool:
        """Create branch `name` at `commit`; False when it exists already (git refuses to
        overwrite it, so two tasks can never take one name)."""
        out = self._run(["-C", repo, "branch", "--no-track", "--", name, commit])
        if out.returncode == 0:
            return True
        if self.branch_exists(repo, name):
            return False
        raise WorkspaceError(_said(out, f"git could not create branch {name}"))

    def delete_branches(self, repo: str, names: list[str]) -> None:
        existing = [n for n in names if self.branch_exists(repo, n)]
        if existing:
            with self._lock(repo):
                self._ok(["-C", repo, "branch", "-D", "--", *existing])

    # -- worktrees ------------------------------------------------------------------------

    def enter(self, repo: str, path: str, branch: str, start: str) -> None:
        """A clean worktree at `path` on `branch`, reset to `start`: made when missing, else
        reset (a retry, or a subtask resumed after a crash, starts from nothing it left)."""
        if not os.path.exists(os.path.join(path, ".git")):
            if os.path.exists(path):
                shutil.rmtree(path)  # a directory a crash left before git wrote its `.git`
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            # Only the records, under the repository's lock: git reads every worktree's
            # records while it adds one, and fails on one another add is writing.
            with self._lock(repo):
                self._ok(["-C", repo, "worktree", "add", "--no-checkout", "--force", "-B",
                          branch, path, start])  # fmt: skip
            self._ok(["-C", path, "reset", "--hard", "--quiet"])  # the files, in parallel
            return
        self._run(["-C", path, "merge", "--abort"])  # a merge a crash left half-done
        # Back on `branch` (an action may have switched), then moved to `start`: neither
        # reads another worktree's records, so no lock is needed.
        self._ok(["-C", path, "symbolic-ref", "HEAD", f"refs/heads/{branch}"])
        self.reset(path, start)

    def merge(self, path: str, branch: str, message: str, identity: Identity) -> list[str] | None:
        """Merge `branch` into the worktree's branch: None when it merged, else the files
        that conflict (the merge is undone)."""
        out = self._run(
            ["-C", path, "merge", "--no-ff", "--no-edit", "-m", message, "--", branch],
            extra=identity.env(),
        )
        if out.returncode == 0:
            return None
        conflicted = self._ok(["-C", path, "diff", "--name-only", "-z", "--diff-filter=U"])
        files = sorted(f for f in conflicted.split("\0") if f)
        self._run(["-C", path, "merge", "--abort"])
        if not files:
            raise WorkspaceError(_said(out, f"git could not merge {branch}"))
        return files

    def merge_all(
        self, path: str, branches: list[str], message: str, identity: Identity
    ) -> list[str]:
        """Merge each of `branches` in turn; the files of the first that conflicts ([]: all
        merged)."""
        for branch in branches:
            files = self.merge(path, branch, message, identity)
            if files is not None:
                return files
        return []

    def reset(self, path: str, commit: str) -> None:
        self._ok(["-C", path, "reset", "--hard", "--quiet", commit])
        self._ok(["-C", path, "clean", "-ffdx", "--quiet"])

    def commit_all(self, path: str, start: str, message: str, identity: Identity) -> Change:
        """Commit everything the worktree holds beyond `start` (nothing when unchanged), and
        say what changed since `start`."""
        self._ok(["-C", path, "add", "--all"])
        staged = self._run(["-C", path, "diff", "--cached", "--quiet"])
        if staged.returncode == 0:
            head = self.head(path)
            if head == start:
                return Change(None, (), "")
        else:
            self._ok(
                ["-C", path, "commit", "--quiet", "--no-verify", "-m", message],
                extra=identity.env(),
            )
            head = self.head(path)
        files = tuple(self.changed_files(path, start, head))
        stat = self._ok(["-C", path, "diff", "--stat=100", start, head]).strip()
        return Change(head, files, stat[-_DIFFSTAT_CHARS:])

    def remove_task(self, repo: str | None, task_id: str) -> None:
        """Remove every worktree of the task (its directory, then git's records of it)."""
        shutil.rmtree(self.root / task_id, ignore_errors=True)
        if repo is not None and os.path.isdir(repo):
            with self._lock(repo):
                self._run(["-C", repo, "worktree", "prune"])

    def prune(self, repo: str) -> list[str]:
        """Forget the repository's worktrees under `root` whose directory is gone; returns
        what it still lists under `root` (none, unless a server is using them)."""
        with self._lock(repo):
            self._ok(["-C", repo, "worktree", "prune"])
        root = os.path.realpath(self.root)
        return [p for p in self.worktrees(repo) if os.path.commonpath([p, root]) == root]

    def task_dirs(self) -> dict[str, list[str]]:
        """Task id → the repositories its worktrees (still on disk) belong to."""
        out: dict[str, list[str]] = {}
        if not self.root.is_dir():
            return out
        for task in sorted(self.root.iterdir()):
            repos: set[str] = set()
            for tree in task.iterdir() if task.is_dir() else ():
                repo = _repo_of_worktree(tree)
                if repo is not None:
                    repos.add(repo)
            out[task.name] = sorted(repos)
        return out

    # -- running git ----------------------------------------------------------------------

    def _run(
        self, args: list[str], extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**self._env, **extra} if extra else self._env
        try:
            return subprocess.run(  # argv only: git itself
                [self.git, *_QUIET, *args],
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                timeout=GIT_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise WorkspaceError("git is not installed on this server") from None
        except subprocess.TimeoutExpired:
            raise WorkspaceError(
                f"git {args[2] if len(args) > 2 else ''} took over {GIT_TIMEOUT_S:g} s"
            ) from None

    def _ok(self, args: list[str], extra: dict[str, str] | None = None) -> str:
        out = self._run(args, extra)
        if out.returncode != 0:
            verb = next((a for a in args if not a.startswith("-") and not os.path.isabs(a)), "")
            raise WorkspaceError(_said(out, f"git {verb} failed"))
        return out.stdout


def _said(out: subprocess.CompletedProcess[str], what: str) -> str:
    words = (out.stderr or out.stdout).strip().splitlines()
    return f"{what}: {words[-1][:300]}" if words else what


def _repo_of_worktree(tree: Path) -> str | None:
    """The main worktree of the repository a linked worktree belongs to, from its `.git`
    file (`gitdir: <repo>/.git/worktrees/<name>`)."""
    try:
        text = (tree / ".git").read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = Path(text[len("gitdir: ") :].strip())
    if gitdir.parent.name != "worktrees" or gitdir.parent.parent.name != ".git":
        return None
    return str(gitdir.parent.parent.parent)
