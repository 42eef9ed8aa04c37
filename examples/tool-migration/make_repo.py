"""Make the git repository the worktree mode of this example migrates.

    python3 make_repo.py [DEST]        (default: repo/ next to this file)

Copies the 17 tools, the SDK and the migration and check scripts into DEST, then `git init`s it
on branch `main` with them in one commit. DEST must not exist (remove it to start over). The
task `repo-task.yaml` then migrates every tool in its own worktree and branch and merges them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("catalog.py", "toolsdk.py", "migrate_tool.py", "check_tool.py", "check_all.py")
IDENTITY = ["-c", "user.name=Tool Owner", "-c", "user.email=owner@example.invalid"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *IDENTITY, "-C", str(repo), *args], check=True, capture_output=True)


def make(dest: Path) -> None:
    dest.mkdir(parents=True)
    shutil.copytree(HERE / "tools", dest / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        shutil.copy2(HERE / name, dest / name)
    (dest / ".gitignore").write_text("__pycache__/\n*.pyc\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    git(dest, "add", "--all")
    git(dest, "commit", "-q", "-m", "17 tools in the controller pattern")


def main(argv: list[str]) -> int:
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    dest = Path(argv[0]) if argv else HERE / "repo"
    if dest.exists():
        print(f"make_repo: {dest} exists; remove it to start over", file=sys.stderr)
        return 1
    make(dest)
    print(f"make_repo: a git repository with 17 tools at {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
