"""`reynolds orchestrate` and `tasks show` on a task workspace: each subtask's branch and
files, and what the merge step merged and left out."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from reynolds.entrypoints.cli.render import render_result


def shown(result: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_result(console, result)
    return console.export_text()


def test_branches_files_and_the_merges_left_out_are_shown() -> None:
    subtasks = [
        {
            "id": "edit:a",
            "status": "succeeded",
            "branch": "reynolds/t1/edit-a",
            "commit": "1" * 40,
            "filesChanged": ["a.txt", "b.txt"],
        },
        {
            "id": "integrate",
            "status": "failed",
            "error": "merged 1 branch(es) into done; skipped 1: reynolds/t1/edit-b conflicts",
            "workspace": {
                "integration": {
                    "into": "done",
                    "commit": "abcdef0123456789",
                    "merged": ["reynolds/t1/edit-a"],
                    "skipped": [
                        {"branch": "reynolds/t1/edit-b", "reason": "conflict", "files": ["x.py"]}
                    ],
                }
            },
        },
    ]
    text = shown({"taskId": "t1", "status": "failed", "subtasks": subtasks})
    row = next(line for line in text.splitlines() if "edit:a" in line)
    assert "reynolds/t1/edit-a" in row and row.rstrip().rstrip("│ ").endswith("2")
    assert "Merged 1 branch(es) into done (at abcdef012345); 1 left out" in text
    assert "reynolds/t1/edit-b: conflict in x.py" in text
    assert "integrate: merged 1 branch(es) into done; skipped 1" in text


def test_a_task_without_a_workspace_shows_no_branch_column() -> None:
    text = shown(
        {"taskId": "t2", "status": "succeeded", "subtasks": [{"id": "s", "status": "succeeded"}]}
    )
    assert "branch" not in text and "Merged" not in text
