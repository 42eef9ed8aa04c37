"""A server killed with SIGKILL while its subtasks work in git worktrees: started again, it
resets those worktrees, finishes the task, merges, and leaves no worktree behind."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.test_crash_resume import Server
from tests.helpers.git_repos import make_repo, show, state, worktrees
from tests.helpers.polling import wait_for

PY = sys.executable
# argv: component, marker directory. Records that it started, writes its change, then waits
# for a long time unless the server has been restarted (the `resumed` marker exists).
STEP = (
    "import os, sys, time\n"
    "name, marks = sys.argv[1], sys.argv[2]\n"
    "if name == 'broken':\n"
    "    sys.exit(1)\n"
    "litter = 'litter-' + name\n"
    "assert not os.path.exists(litter), 'a resumed attempt found the first one\\'s litter'\n"
    "open(litter, 'w').write('half-done')\n"
    "open(os.path.join(marks, name), 'w').write(str(os.getpid()))\n"
    "while not os.path.exists(os.path.join(marks, 'resumed')):\n"
    "    time.sleep(0.05)\n"
    "os.remove(litter)\n"
    "open(name + '.txt', 'a').write('done ' + name + '\\n')\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "home")
    srv.env["REYNOLDS_WORKSPACE_REPOS"] = str(tmp_path / "repos")
    try:
        yield srv
    finally:
        srv.stop()


def test_sigkill_with_worktrees_in_use_then_restart_finishes_and_leaves_no_worktree(
    server: Server, tmp_path: Path
) -> None:
    names = ["c0", "c1", "c2", "c3"]
    repo = make_repo(tmp_path / "repos" / "app", {f"{n}.txt": f"{n}\n" for n in names})
    before = state(repo)
    marks = tmp_path / "marks"
    marks.mkdir()
    server.start()
    task = server.call(
        "orchestrate_task",
        task={
            "type": "crash-in-worktrees",
            # `broken` fails before the crash: the merge step still runs after the restart.
            "components": ["broken", *names],
            "steps": [
                {
                    "name": "edit",
                    "action": {
                        "kind": "shell",
                        "argv": [PY, "-c", STEP, "{component}", str(marks)],
                    },
                }
            ],
            "workspace": {"repo": str(repo), "merge": {"into": "after-crash"}},
        },
        strategy={"maxConcurrency": 5},
        wait=False,
    )
    task_id = task["taskId"]
    wait_for(lambda: all((marks / n).exists() for n in names), 30, "the subtasks did not all start")
    wait_for(
        lambda: any(
            s["id"] == "edit:broken" and s["status"] == "failed"
            for s in server.task(task_id)["subtasks"]
        ),
        30,
        "the broken subtask did not fail",
    )
    in_use = worktrees(repo)
    assert len(in_use) == 6, in_use  # the repository and one worktree per subtask
    server.kill()
    for n in names:
        (marks / n).unlink()
    (marks / "resumed").write_text("")
    server.start()

    def finished() -> dict[str, object] | None:
        result = server.task(task_id)
        return result if result["status"] not in ("pending", "running") else None

    result = wait_for(finished, 60, "the resumed task did not finish")
    assert result["status"] == "failed"  # edit:broken
    subs = {s["id"]: s for s in result["subtasks"]}
    assert subs["integrate"]["status"] == "succeeded", subs["integrate"]["error"]
    assert len(subs["integrate"]["workspace"]["integration"]["merged"]) == 4
    for n in names:
        assert show(repo, "after-crash", f"{n}.txt") == f"{n}\ndone {n}\n"
    assert worktrees(repo) == [str(repo)]
    assert not any((server.home / "worktrees").glob("*/*"))
    assert state(repo) == before
