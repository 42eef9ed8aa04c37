"""Decide whether a pull request may be merged, and with which commit title."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/merge_pull_request"


class MergePullRequestController(Controller):
    """Decide whether a pull request can be merged by the chosen method, and list what blocks it."""

    METHODS = ("merge", "rebase", "squash")
    PASSING = frozenset({"success", "skipped", "neutral"})

    def __init__(self) -> None:
        self.required_approvals = 1

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        pull = self.require(request, "pullRequest")
        method = request.get("method", "squash")
        if method not in self.METHODS:
            raise BadRequest(f"method must be one of {', '.join(self.METHODS)}")
        blockers = []
        if pull.get("draft"):
            blockers.append("the pull request is a draft")
        if pull.get("mergeableState") == "dirty":
            blockers.append("it conflicts with the base branch")
        failing = sorted(
            check["name"]
            for check in pull.get("checks", [])
            if check["conclusion"] not in self.PASSING
        )
        if failing:
            blockers.append("checks not passing: " + ", ".join(failing))
        needed = request.get("requiredApprovals", self.required_approvals) - pull.get(
            "approvals", 0
        )
        if needed > 0:
            blockers.append(f"{needed} more approval(s) needed")
        return {
            "mergeable": not blockers,
            "method": method,
            "blockers": blockers,
            "commitTitle": self._commit_title(pull, method),
        }

    @staticmethod
    def _commit_title(pull: dict[str, Any], method: str) -> str:
        if method == "squash":
            return f"{pull['title']} (#{pull['number']})"
        if method == "merge":
            return f"Merge pull request #{pull['number']} from {pull['head']}"
        return pull["title"]


TEST_CASES = [
    (
        {
            "pullRequest": {
                "number": 3,
                "title": "Add fins",
                "head": "acme:fins",
                "approvals": 1,
                "checks": [
                    {"name": "lint", "conclusion": "success"},
                    {"name": "docs", "conclusion": "skipped"},
                ],
            }
        },
        {"mergeable": True, "method": "squash", "blockers": [], "commitTitle": "Add fins (#3)"},
    ),
    (
        {
            "method": "merge",
            "requiredApprovals": 2,
            "pullRequest": {
                "number": 4,
                "title": "WIP",
                "head": "acme:wip",
                "draft": True,
                "mergeableState": "dirty",
                "approvals": 0,
                "checks": [
                    {"name": "tests", "conclusion": "failure"},
                    {"name": "build", "conclusion": "timed_out"},
                ],
            },
        },
        {
            "mergeable": False,
            "method": "merge",
            "blockers": [
                "the pull request is a draft",
                "it conflicts with the base branch",
                "checks not passing: build, tests",
                "2 more approval(s) needed",
            ],
            "commitTitle": "Merge pull request #4 from acme:wip",
        },
    ),
    (
        {"method": "rebase", "pullRequest": {"number": 5, "title": "Tidy", "approvals": 3}},
        {"mergeable": True, "method": "rebase", "blockers": [], "commitTitle": "Tidy"},
    ),
    (
        {"method": "octopus", "pullRequest": {}},
        {"error": "method must be one of merge, rebase, squash"},
    ),
]
