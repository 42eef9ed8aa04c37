"""The README's examples, run as written: `reynolds orchestrate examples/.../task.yaml`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import Server, make_server, output
from tests.helpers.git_repos import git, state, worktrees

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose working directory holds a copy of `examples/`, as the repo root would."""
    server = make_server(tmp_path_factory.mktemp("examples"))
    shutil.copytree(
        ROOT / "examples",
        server.workdir / "examples",
        ignore=shutil.ignore_patterns("work", "repo", "__pycache__"),
    )
    started = server.run("start")
    assert started.returncode == 0, output(started)
    yield server
    server.run("stop")


def orchestrate(server: Server, task_file: str) -> dict[str, Any]:
    done = server.run("orchestrate", task_file, "--json")
    assert done.returncode == 0, output(done)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_tool_migration_example_migrates_and_checks_all_seventeen_tools(
    example_server: Server,
) -> None:
    result = orchestrate(example_server, "examples/tool-migration/task.yaml")
    assert result["status"] == "succeeded"
    assert len(result["subtasks"]) == 34
    assert {s["status"] for s in result["subtasks"]} == {"succeeded"}
    migrated = list((example_server.workdir / "examples/tool-migration/work").rglob("*.py"))
    assert len([p for p in migrated if p.name != "__init__.py"]) >= 17
    assert result["metrics"]["speedup"] > 1.5


def test_the_worktree_mode_migrates_a_git_repository_one_worktree_each_and_merges(
    example_server: Server,
) -> None:
    workdir = example_server.workdir
    made = subprocess.run(
        [sys.executable, "examples/tool-migration/make_repo.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    repo = workdir / "examples/tool-migration/repo"
    before = state(repo)
    result = orchestrate(example_server, "examples/tool-migration/repo-task.yaml")
    assert result["status"] == "succeeded", result["results"]
    subs = {s["id"]: s for s in result["subtasks"]}
    assert len(subs) == 35  # 17 migrations, 17 checks, the merge step
    migrated = [s for s in subs.values() if s["step"] == "migrate"]
    assert all(len(s["filesChanged"]) == 2 for s in migrated)  # the tool and the package
    assert all(subs[f"check:{s['component']}"]["commit"] is None for s in migrated)
    integration = subs["integrate"]["workspace"]["integration"]
    assert len(integration["merged"]) == 17 and integration["skipped"] == []
    assert "17 tools pass, 0 fail" in subs["integrate"]["output"]
    merged = git(repo, "ls-tree", "--name-only", "sdk-migration", "sdk_tools/").split()
    assert len([p for p in merged if p.endswith("_tool.py")]) == 17
    assert worktrees(repo) == [str(repo)]
    assert state(repo) == before


def test_the_deployment_example_sets_up_deploys_in_parallel_and_validates(
    example_server: Server,
) -> None:
    result = orchestrate(example_server, "examples/deployment/task.yaml")
    assert result["status"] == "succeeded", result
    groups = result["plan"]["parallelGroups"]
    assert len(groups) == 3 and len(groups[1]) >= 5


def test_the_migration_by_agents_stays_planned_without_an_executor(
    example_server: Server,
) -> None:
    done = example_server.run("orchestrate", "examples/tool-migration/agent-task.yaml", "--json")
    assert done.returncode == 3, output(done)  # planned
    result = json.loads(done.stdout)
    assert result["status"] == "planned"
    assert "needs an executor for the code pool" in result["message"]


def test_the_migration_by_agents_runs_each_tool_s_agent_on_its_instruction(
    tmp_path: Path,
) -> None:
    """The seed's example: a migration of 17 tools with no steps; each `migrate` subtask's
    agent (the pool's executor) is told its part through {instruction} and edits the work
    folder; `validate` checks them all."""
    server = make_server(tmp_path)
    shutil.copytree(
        ROOT / "examples",
        server.workdir / "examples",
        ignore=shutil.ignore_patterns("work", "repo", "__pycache__"),
    )
    env = {"REYNOLDS_CONFIG_DIR": str(server.workdir / "examples/tool-migration/agent-config")}
    started = server.run("start", env=env)
    assert started.returncode == 0, output(started)
    try:
        done = server.run(
            "orchestrate", "examples/tool-migration/agent-task.yaml", "--json", env=env
        )
    finally:
        server.run("stop", env=env)
    assert done.returncode == 0, output(done)
    result = json.loads(done.stdout)
    subtasks = {s["id"]: s for s in result["subtasks"]}
    assert len(subtasks) == 18 and result["status"] == "succeeded"
    assert result["plan"]["pattern"] == "migration"
    assert "agent: migrating CreateIssueTool" in subtasks["migrate:CreateIssueTool"]["output"]
    assert "validated 17 migrated tool(s), 0 failed" in subtasks["validate"]["output"]
    migrated = (server.workdir / "examples/tool-migration/work/sdk_tools").glob("*_tool.py")
    assert len(list(migrated)) == 17
