"""Task workspaces on real git repositories: a worktree and branch per subtask, commits, the
merge step, and nothing left behind in the repository or the person's checkout."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.git_repos import branches, git, make_repo, show, state, worktrees
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import Container, build
from reynolds.core.models import Strategy, TaskSpec
from reynolds.errors import InvalidInput
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
# Appends a line naming the component to FILE (argv: file, text), after an optional nap.
APPEND = (
    "import sys, time; time.sleep(float(sys.argv[3])); "
    "open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
)
REPLACE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2] + '\\n')"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    path = tmp_path / "repos"
    path.mkdir()
    return path


@pytest.fixture
async def app(tmp_path: Path, repos: Path) -> AsyncIterator[Container]:
    settings = Settings(home=tmp_path / "home", workspace_repos=str(repos), retry_base_s=0.01)
    container = await build(settings)
    try:
        yield container
    finally:
        await container.aclose()


def shell(*argv: str) -> dict[str, Any]:
    return {"kind": "shell", "argv": list(argv)}


async def run_task(app: Container, task: dict[str, Any], concurrency: int = 8) -> dict[str, Any]:
    spec = TaskSpec.model_validate(task)
    strategy = Strategy(approach="parallel_optimized", max_concurrency=concurrency)
    run = await app.engine.submit(spec, strategy)
    assert await app.engine.wait(run, 60), "task did not finish in time"
    return await app.engine.result(run.id)


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["subtasks"]}


def most_at_once(subtasks: list[dict[str, Any]]) -> int:
    """The most subtasks that were running at one moment."""
    edges = []
    for s in subtasks:
        edges.append((datetime.fromisoformat(s["startedAt"]), 1))
        edges.append((datetime.fromisoformat(s["finishedAt"]), -1))
    now = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


async def test_eight_components_edit_their_own_files_in_parallel_and_all_eight_merge(
    app: Container, repos: Path
) -> None:
    names = [f"tool{i}" for i in range(8)]
    repo = make_repo(repos / "tools", {f"{n}.txt": f"{n}\n" for n in names} | {"README": "x\n"})
    # The person's checkout: a local edit and an untracked file, both to be left alone.
    (repo / "README").write_text("my unsaved edit\n")
    (repo / "notes.txt").write_text("mine\n")
    before = state(repo)
    result = await run_task(
        app,
        {
            "type": "tool-migration",
            "components": names,
            "steps": [
                {
                    "name": "migrate",
                    "action": shell(
                        PY, "-c", APPEND, "{component}.txt", "migrated {component}", "0.3"
                    ),
                }
            ],
            "workspace": {"repo": str(repo), "merge": {"into": "migrated-tools"}},
        },
    )
    assert result["status"] == "succeeded", result["results"]
    subs = by_id(result)
    task_id = result["taskId"]
    for n in names:
        sub = subs[f"migrate:{n}"]
        assert sub["branch"] == f"reynolds/{task_id}/migrate-{n}"
        assert sub["filesChanged"] == [f"{n}.txt"]
        assert f"{n}.txt" in sub["diffstat"]
        assert show(repo, sub["commit"], f"{n}.txt") == f"{n}\nmigrated {n}\n"
        # Each branch holds its own change only.
        assert (
            show(repo, sub["commit"], "tool0.txt" if n != "tool0" else "tool1.txt").count(
                "migrated"
            )
            == 0
        )
    assert most_at_once([subs[f"migrate:{n}"] for n in names]) >= 2
    made = git(repo, "log", "-1", "--format=%an <%ae>%n%B", subs["migrate:tool3"]["commit"])
    assert made.startswith(f"Reynolds (task {task_id}) <reynolds+{task_id}@localhost>\n")
    assert "tool-migration: migrate tool3" in made
    assert f"Reynolds-Task: {task_id}" in made and "Reynolds-Component: tool3" in made
    integration = subs["integrate"]["workspace"]["integration"]
    assert integration["into"] == "migrated-tools" and integration["skipped"] == []
    assert len(integration["merged"]) == 8
    for n in names:
        assert show(repo, "migrated-tools", f"{n}.txt") == f"{n}\nmigrated {n}\n"
    assert result["plan"]["workspace"]["branches"]["migrate:tool3"].endswith("/migrate-tool3")
    assert state(repo) == before
    assert worktrees(repo) == [str(repo)]
    assert len(branches(repo, f"reynolds/{task_id}/*")) == 8  # kept for a person to read


async def test_two_components_on_one_line_fail_the_merge_naming_both_branches_and_the_file(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "clash", {"shared.txt": "original\n", "c.txt": "c\n", "d.txt": "d\n"})
    result = await run_task(
        app,
        {
            "type": "edit",
            "subtasks": [
                {"id": "a", "action": shell(PY, "-c", REPLACE, "shared.txt", "from a")},
                {"id": "b", "action": shell(PY, "-c", REPLACE, "shared.txt", "from b")},
                {"id": "c", "action": shell(PY, "-c", REPLACE, "c.txt", "from c")},
                {"id": "d", "action": shell(PY, "-c", REPLACE, "d.txt", "from d")},
            ],
            "workspace": {"repo": str(repo), "merge": {"into": "together"}},
        },
    )
    subs = by_id(result)
    task_id = result["taskId"]
    assert [subs[x]["status"] for x in "abcd"] == ["succeeded"] * 4
    merge = subs["integrate"]
    assert merge["status"] == "failed" and result["status"] == "failed"
    branch_a, branch_b = f"reynolds/{task_id}/a", f"reynolds/{task_id}/b"
    assert branch_a in merge["error"] and branch_b in merge["error"]
    assert "shared.txt" in merge["error"]
    skipped = merge["workspace"]["integration"]["skipped"]
    assert skipped == [
        {
            "subtask": "b",
            "branch": branch_b,
            "reason": "conflict",
            "files": ["shared.txt"],
            "conflictsWith": [branch_a],
        }
    ]
    assert show(repo, "together", "shared.txt") == "from a\n"
    assert show(repo, "together", "c.txt") == "from c\n"
    assert show(repo, "together", "d.txt") == "from d\n"
    assert branch_b in branches(repo)  # left for a person
    assert worktrees(repo) == [str(repo)]


async def test_a_dependent_starts_from_its_upstream_branches_and_a_retry_from_a_clean_tree(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "chain", {"x.txt": "x\n", "y.txt": "y\n"})
    # Attempt 1 leaves litter and fails; attempt 2 fails if it finds the litter.
    retry = (
        "import os, sys\n"
        "if sys.argv[1] == '1':\n"
        "    open('litter.txt', 'w').write('left')\n"
        "    sys.exit(3)\n"
        "sys.exit(4 if os.path.exists('litter.txt') else 0)\n"
    )
    combine = "import sys; open('both.txt', 'w').write(open('x.txt').read() + open('y.txt').read())"
    result = await run_task(
        app,
        {
            "type": "chain",
            "subtasks": [
                {"id": "x", "action": shell(PY, "-c", REPLACE, "x.txt", "x2")},
                {"id": "y", "action": shell(PY, "-c", REPLACE, "y.txt", "y2")},
                {"id": "flaky", "action": shell(PY, "-c", retry, "{attempt}"), "retries": 1},
                {"id": "z", "dependsOn": ["x", "y"], "action": shell(PY, "-c", combine)},
            ],
            "workspace": {"repo": str(repo), "keepBranches": False},
        },
    )
    assert result["status"] == "succeeded", result["results"]
    subs = by_id(result)
    assert subs["flaky"]["attempts"] == 2
    assert subs["flaky"]["commit"] is None and subs["flaky"]["filesChanged"] == []
    assert show(repo, subs["z"]["commit"], "both.txt") == "x2\ny2\n"
    assert subs["z"]["filesChanged"] == ["both.txt"]
    assert "integrate" not in subs  # no merge asked for
    assert branches(repo, "reynolds/*") == []  # keepBranches: false
    assert worktrees(repo) == [str(repo)]


async def test_the_workspace_placeholder_and_cwd_are_the_subtasks_worktree(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "where", {"f.txt": "f\n"})
    where = "import os, sys; open('where.txt', 'w').write(os.getcwd() + '|' + sys.argv[1])"
    result = await run_task(
        app,
        {
            "type": "where",
            "subtasks": [{"id": "w", "action": shell(PY, "-c", where, "{workspace}")}],
            "workspace": {"repo": str(repo)},
        },
    )
    assert result["status"] == "succeeded", result["results"]
    cwd, placeholder = show(repo, by_id(result)["w"]["commit"], "where.txt").split("|")
    assert cwd == placeholder
    assert cwd.startswith(str(app.settings.worktrees_dir / result["taskId"]))


async def test_isolate_none_runs_in_the_repository_itself(app: Container, repos: Path) -> None:
    repo = make_repo(repos / "shared", {"f.txt": "f\n"})
    result = await run_task(
        app,
        {
            "type": "shared",
            "subtasks": [{"id": "w", "action": shell(PY, "-c", REPLACE, "out.txt", "here")}],
            "workspace": {"repo": str(repo), "isolate": "none"},
        },
    )
    assert result["status"] == "succeeded"
    assert (repo / "out.txt").read_text() == "here\n"
    assert "branch" not in by_id(result)["w"]


async def test_the_check_runs_after_each_merge_and_a_branch_that_fails_it_is_left_out(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "checked", {"a.txt": "ok\n", "b.txt": "ok\n"})
    # The check: every .txt file says ok.
    check = "import glob, sys; sys.exit(any(open(f).read() != 'ok\\n' for f in glob.glob('*.txt')))"
    result = await run_task(
        app,
        {
            "type": "checked",
            "subtasks": [
                {"id": "good", "action": shell(PY, "-c", REPLACE, "c.txt", "ok")},
                {"id": "bad", "action": shell(PY, "-c", REPLACE, "a.txt", "broken")},
            ],
            "workspace": {
                "repo": str(repo),
                "merge": {"into": "checked", "check": shell(PY, "-c", check)},
            },
        },
    )
    subs = by_id(result)
    integration = subs["integrate"]["workspace"]["integration"]
    assert [s["subtask"] for s in integration["skipped"]] == ["bad"]
    assert integration["skipped"][0]["reason"] == "check_failed"
    assert integration["merged"] == [subs["good"]["branch"]]
    assert show(repo, "checked", "c.txt") == "ok\n"
    assert show(repo, "checked", "a.txt") == "ok\n"  # the failing merge was undone
    assert subs["integrate"]["status"] == "failed"


def task_with(repo: str, **workspace: Any) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "type": "refused",
            "subtasks": [{"id": "s", "action": shell("true")}],
            "workspace": {"repo": repo, **workspace},
        }
    )


async def test_workspaces_outside_the_allowed_repositories_and_bad_refs_are_refused(
    app: Container, repos: Path, tmp_path: Path
) -> None:
    elsewhere = make_repo(tmp_path / "elsewhere", {"f": "f\n"})
    repo = make_repo(repos / "ok", {"f": "f\n"})
    git(repo, "branch", "taken")
    (repos / "plain").mkdir()
    cases = [
        (task_with(str(elsewhere)), "task.workspace.repo", "not an allowed repository"),
        (task_with("/etc"), "task.workspace.repo", "not an allowed repository"),
        (task_with(str(repos / "plain")), "task.workspace.repo", "not a git repository"),
        (task_with(str(repo), base="no-such-ref"), "task.workspace.base", "names no commit"),
        (task_with(str(repo), merge={"into": "taken"}), "task.workspace.merge.into", "exists"),
    ]
    for spec, field, words in cases:
        with pytest.raises(InvalidInput) as caught:
            await app.engine.submit(spec)
        assert caught.value.details.get("field") == field, caught.value.message
        assert words in caught.value.message
    assert await app.engine.list_tasks(None, 10) == []
    assert branches(repo) == ["main", "taken"]


async def test_a_merge_branch_cannot_be_taken_by_two_tasks(app: Container, repos: Path) -> None:
    repo = make_repo(repos / "twice", {"f": "f\n"})
    first = await app.engine.submit(task_with(str(repo), merge={"into": "mine"}))
    with pytest.raises(InvalidInput) as caught:
        await app.engine.submit(task_with(str(repo), merge={"into": "mine"}))
    assert caught.value.details.get("field") == "task.workspace.merge.into"
    assert await app.engine.wait(first, 30)


async def test_the_merge_step_runs_after_failures_and_merges_what_succeeded(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "partial", {"f.txt": "f\n"})
    result = await run_task(
        app,
        {
            "type": "partial",
            "subtasks": [
                {"id": "broken", "action": shell(PY, "-c", "import sys; sys.exit(2)")},
                {"id": "after-broken", "dependsOn": ["broken"], "action": shell("true")},
                {"id": "fine", "action": shell(PY, "-c", REPLACE, "fine.txt", "fine")},
            ],
            "workspace": {"repo": str(repo), "merge": {"into": "partial"}},
        },
    )
    subs = by_id(result)
    assert (subs["broken"]["status"], subs["after-broken"]["status"]) == ("failed", "skipped")
    assert subs["integrate"]["status"] == "succeeded"
    assert subs["integrate"]["workspace"]["integration"]["merged"] == [subs["fine"]["branch"]]
    assert show(repo, "partial", "fine.txt") == "fine\n"
    assert result["status"] == "failed"  # a subtask failed, whatever merged
    assert worktrees(repo) == [str(repo)]


async def test_a_cancelled_task_leaves_no_worktree(app: Container, repos: Path) -> None:
    repo = make_repo(repos / "cancelled", {"f.txt": "f\n"})
    spec = TaskSpec.model_validate(
        {
            "type": "cancelled",
            "components": ["a", "b"],
            "steps": [{"name": "wait", "action": shell("sleep", "30")}],
            "workspace": {"repo": str(repo), "merge": {"into": "never"}},
        }
    )
    run = await app.engine.submit(spec)
    await wait_for_async(lambda: len(worktrees(repo)) == 3, 20, "the worktrees were not made")
    await wait_for_async(lambda: run.counts().get("running") == 2, 20, "the subtasks did not start")
    result = await app.engine.cancel(run.id)
    assert result["status"] == "cancelled"
    assert worktrees(repo) == [str(repo)]


async def test_a_start_removes_worktrees_no_unfinished_task_owns(
    tmp_path: Path, repos: Path
) -> None:
    repo = make_repo(repos / "stale", {"f.txt": "f\n"})
    settings = Settings(home=tmp_path / "home", workspace_repos=str(repos))
    stale = settings.worktrees_dir / ("f" * 32) / "left-over"
    stale.parent.mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", "reynolds/left/over", str(stale))
    assert len(worktrees(repo)) == 2
    container = await build(settings)
    try:
        assert worktrees(repo) == [str(repo)]
        assert not stale.exists()
    finally:
        await container.aclose()


async def test_a_dependent_whose_upstream_branches_conflict_fails_once_naming_the_files(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "upstream-clash", {"shared.txt": "original\n"})
    result = await run_task(
        app,
        {
            "type": "upstream-clash",
            "subtasks": [
                {"id": "a", "action": shell(PY, "-c", REPLACE, "shared.txt", "from a")},
                {"id": "b", "action": shell(PY, "-c", REPLACE, "shared.txt", "from b")},
                {"id": "both", "dependsOn": ["a", "b"], "retries": 2, "action": shell("true")},
            ],
            "workspace": {"repo": str(repo)},
        },
    )
    both = by_id(result)["both"]
    assert (both["status"], both["reason"], both["attempts"]) == ("failed", "conflict", 1)
    assert "shared.txt" in both["error"]
    assert worktrees(repo) == [str(repo)]


async def test_a_check_its_pool_refuses_fails_the_merge_once_and_blames_no_branch(
    app: Container, repos: Path
) -> None:
    repo = make_repo(repos / "refused-check", {"f.txt": "f\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    result = await run_task(
        app,
        {
            "type": "refused-check",
            "subtasks": [
                {"id": "a", "action": shell(PY, "-c", REPLACE, "a.txt", "a")},
                {"id": "b", "action": shell(PY, "-c", REPLACE, "b.txt", "b")},
            ],
            "workspace": {
                "repo": str(repo),
                "merge": {
                    "into": "never-checked",
                    "check": {"kind": "mcp", "server": "undeclared", "tool": "run_tests"},
                },
            },
        },
    )
    merge = by_id(result)["integrate"]
    assert merge["status"] == "failed" and merge["reason"] == "workspace"
    assert "the check could not run (denied)" in merge["error"]
    assert git(repo, "rev-parse", "never-checked").strip() == base  # nothing merged
    assert worktrees(repo) == [str(repo)]
