"""Worktree per subtask: what isolating each subtask in its own git worktree costs.

A repository of 1,200 files (40 directories of 30, about 1 KB each) is made with git. Measured
in the same run:
- git alone: `git worktree add -b BRANCH PATH` and `git worktree remove --force PATH`, one
  subtask's worth at a time (the floor any tool that isolates this way pays);
- Reynolds: a task of 16 subtasks running `true` in that repository, `isolate: none` (the
  shared checkout) against `isolate: worktree` (each subtask its own worktree and branch, its
  changes committed, every worktree removed before the task is reported finished), at
  maxConcurrency 1 and 8; the extra wall-clock time per subtask is the worktree's cost;
- the merge step: 16 subtasks that each change their own file, merged into a new branch.

    .venv/bin/python benchmarks/worktrees.py --spawn [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

SUBTASKS = 16
DIRS, FILES_PER_DIR = 40, 30
CONCURRENCY = (1, 8)
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "gc.auto=0"]


def git(repo: Path, *args: str) -> None:
    subprocess.run([*_GIT, "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run([*_GIT, "init", "-q", "-b", "main", str(path)], check=True)
    line = "x" * 63 + "\n"
    for d in range(DIRS):
        folder = path / f"pkg{d:02d}"
        folder.mkdir()
        for f in range(FILES_PER_DIR):
            (folder / f"mod{f:02d}.py").write_text(f"# {d}/{f}\n" + line * 16)
    git(path, "add", "--all")
    git(path, "commit", "-q", "-m", "1,200 files")
    return path


def git_alone(repo: Path, scratch: Path) -> dict[str, float]:
    """Median seconds to add and to remove one worktree, one after another."""
    adds, removes = [], []
    for i in range(SUBTASKS):
        path = scratch / f"wt{i}"
        started = time.perf_counter()
        git(repo, "worktree", "add", "-q", "-b", f"bench/{i}", str(path))
        adds.append(time.perf_counter() - started)
        started = time.perf_counter()
        git(repo, "worktree", "remove", "--force", str(path))
        removes.append(time.perf_counter() - started)
    git(repo, "branch", "-q", "-D", *[f"bench/{i}" for i in range(SUBTASKS)])
    return {"addSeconds": statistics.median(adds), "removeSeconds": statistics.median(removes)}


def task(repo: Path, isolate: str, argv: list[str], merge: str | None = None) -> dict[str, Any]:
    workspace: dict[str, Any] = {"repo": str(repo), "isolate": isolate, "keepBranches": False}
    if merge is not None:
        workspace["merge"] = {"into": merge}
    return {
        "type": "benchmark-worktrees",
        "components": [f"pkg{d:02d}" for d in range(SUBTASKS)],
        "steps": [{"name": "work", "action": {"kind": "shell", "argv": argv}}],
        "workspace": workspace,
    }


def through_reynolds(server: harness.Server, repo: Path, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for concurrency in CONCURRENCY:
        walls: dict[str, list[float]] = {"none": [], "worktree": []}
        for _ in range(runs):
            for isolate in walls:
                arguments = {
                    "task": task(repo, isolate, ["true"]),
                    "strategy": {"approach": "parallel_optimized", "maxConcurrency": concurrency},
                    "wait": True,
                    "force": True,
                    "timeoutSeconds": 300,
                }
                result, wall_s = harness.orchestrate(server, arguments)
                harness.require_success(result)
                walls[isolate].append(wall_s)
        none_s, tree_s = statistics.median(walls["none"]), statistics.median(walls["worktree"])
        out[f"concurrency{concurrency}"] = {
            "sharedSeconds": none_s,
            "worktreeSeconds": tree_s,
            "extraPerSubtaskSeconds": (tree_s - none_s) / SUBTASKS,
        }
    return out


def merged(server: harness.Server, repo: Path, runs: int) -> dict[str, float]:
    """The merge step of 16 one-file changes: its own seconds, and the task's wall."""
    steps, walls = [], []
    edit = ["python3", "-c", "import sys; open(sys.argv[1], 'a').write('# edited\\n')",
            "{component}/mod00.py"]  # fmt: skip
    for i in range(runs):
        arguments = {
            "task": task(repo, "worktree", edit, merge=f"bench-merged-{i}-{time.time_ns()}"),
            "strategy": {"approach": "parallel_optimized", "maxConcurrency": 8},
            "wait": True,
            "force": True,
            "timeoutSeconds": 300,
        }
        result, wall_s = harness.orchestrate(server, arguments)
        harness.require_success(result)
        step = next(s for s in result["subtasks"] if s["id"] == "integrate")
        steps.append(_seconds(step["startedAt"], step["finishedAt"]))
        walls.append(wall_s)
    return {"mergeStepSeconds": statistics.median(steps), "wallSeconds": statistics.median(walls)}


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="reynolds-bench-worktrees-"))
    try:
        repo = make_repo(scratch / "repo")
        alone = git_alone(repo, scratch / "alone")
        env = {"REYNOLDS_WORKSPACE_REPOS": str(scratch)}
        with harness.server_for(args, env) as server:
            reynolds = through_reynolds(server, repo, args.repeat)
            merging = merged(server, repo, args.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "machine": harness.machine(),
        "repository": {"files": DIRS * FILES_PER_DIR, "subtasks": SUBTASKS},
        "gitAlone": alone,
        "reynolds": reynolds,
        "merge": merging,
    }
    if not args.json:
        rows = [
            ["git worktree add (one)", alone["addSeconds"], None],
            ["git worktree remove (one)", alone["removeSeconds"], None],
        ]
        for key, figures in reynolds.items():
            rows.append([f"{SUBTASKS} × true, shared, {key}", figures["sharedSeconds"], None])
            rows.append([
                f"{SUBTASKS} × true, worktree, {key}",
                figures["worktreeSeconds"],
                figures["extraPerSubtaskSeconds"],
            ])  # fmt: skip
        rows.append([f"merge step, {SUBTASKS} branches", merging["mergeStepSeconds"], None])
        print(harness.table(["what", "seconds", "extra per subtask (s)"], rows))
    return report


if __name__ == "__main__":
    raise SystemExit(harness.main_guard(run, harness.parser(__doc__ or "").parse_args()))
