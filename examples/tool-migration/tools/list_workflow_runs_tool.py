"""Summarise recent workflow runs: outcomes, success rate and durations."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/list_workflow_runs"


class ListWorkflowRunsController(Controller):
    """Summarise workflow runs, optionally of one branch: outcomes, success rate, durations."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        runs = self.require(request, "runs")
        branch = request.get("branch")
        chosen = [run for run in runs if branch is None or run["branch"] == branch]
        outcomes = Counter(run.get("conclusion") or "in_progress" for run in chosen)
        finished = [run for run in chosen if run.get("conclusion")]
        seconds = {run["id"]: self._seconds(run) for run in finished}
        return {
            "runs": len(chosen),
            "outcomes": dict(sorted(outcomes.items())),
            "successRate": round(outcomes["success"] / len(finished), 3) if finished else None,
            "medianSeconds": statistics.median(seconds.values()) if seconds else None,
            "slowest": max(seconds, key=lambda run_id: seconds[run_id]) if seconds else None,
        }

    @staticmethod
    def _seconds(run: dict[str, Any]) -> float:
        started = datetime.fromisoformat(run["startedAt"])
        finished = datetime.fromisoformat(run["finishedAt"])
        if finished < started:
            raise BadRequest(f"run {run['id']} finishes before it starts")
        return (finished - started).total_seconds()


_RUNS = [
    {
        "id": 1,
        "branch": "main",
        "conclusion": "success",
        "startedAt": "2024-06-01T10:00:00Z",
        "finishedAt": "2024-06-01T10:04:00Z",
    },
    {
        "id": 2,
        "branch": "main",
        "conclusion": "failure",
        "startedAt": "2024-06-01T11:00:00Z",
        "finishedAt": "2024-06-01T11:01:30Z",
    },
    {
        "id": 3,
        "branch": "dev",
        "conclusion": "success",
        "startedAt": "2024-06-01T12:00:00Z",
        "finishedAt": "2024-06-01T12:10:00Z",
    },
    {"id": 4, "branch": "main", "conclusion": None, "startedAt": "2024-06-01T13:00:00Z"},
    {
        "id": 5,
        "branch": "main",
        "conclusion": "success",
        "startedAt": "2024-06-01T14:00:00Z",
        "finishedAt": "2024-06-01T14:02:00Z",
    },
]

TEST_CASES = [
    (
        {"runs": _RUNS},
        {
            "runs": 5,
            "outcomes": {"failure": 1, "in_progress": 1, "success": 3},
            "successRate": 0.75,
            "medianSeconds": 180.0,
            "slowest": 3,
        },
    ),
    (
        {"runs": _RUNS, "branch": "main"},
        {
            "runs": 4,
            "outcomes": {"failure": 1, "in_progress": 1, "success": 2},
            "successRate": 0.667,
            "medianSeconds": 120.0,
            "slowest": 1,
        },
    ),
    (
        {"runs": _RUNS, "branch": "gh-pages"},
        {"runs": 0, "outcomes": {}, "successRate": None, "medianSeconds": None, "slowest": None},
    ),
    (
        {
            "runs": [
                {
                    "id": 9,
                    "branch": "x",
                    "conclusion": "success",
                    "startedAt": "2024-06-02T00:00:00Z",
                    "finishedAt": "2024-06-01T00:00:00Z",
                }
            ]
        },
        {"error": "run 9 finishes before it starts"},
    ),
]
