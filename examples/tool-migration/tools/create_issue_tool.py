"""Create an issue: validate the title, normalise labels and assignees."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/create_issue"


class CreateIssueController(Controller):
    """Validate and normalise a new issue: repository, title, body, labels and assignees."""

    def __init__(self) -> None:
        self.max_title = 256
        self.max_labels = 10

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        repository, title = self.require(request, "repository", "title")
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise BadRequest("repository must look like owner/name")
        title = " ".join(str(title).split())
        if not title:
            raise BadRequest("title may not be blank")
        if len(title) > self.max_title:
            raise BadRequest(f"title is longer than {self.max_title} characters")
        issue = {
            "title": title,
            "body": request.get("body", "").strip(),
            "labels": self._labels(request.get("labels", [])),
            "assignees": sorted({user.lstrip("@") for user in request.get("assignees", [])}),
            "state": "open",
        }
        return {"repository": f"{owner}/{name}", "issue": issue}

    def _labels(self, raw: list[str]) -> list[str]:
        labels = sorted({label.strip().lower() for label in raw if label.strip()})
        if len(labels) > self.max_labels:
            raise BadRequest(f"an issue takes at most {self.max_labels} labels, got {len(labels)}")
        return labels


TEST_CASES = [
    (
        {
            "repository": "acme/rocket",
            "title": "  Engine   stalls at  ignition ",
            "body": "Steps to reproduce...\n",
            "labels": ["Bug", "bug ", "P1", ""],
            "assignees": ["@wile", "wile", "roadrunner"],
        },
        {
            "repository": "acme/rocket",
            "issue": {
                "title": "Engine stalls at ignition",
                "body": "Steps to reproduce...",
                "labels": ["bug", "p1"],
                "assignees": ["roadrunner", "wile"],
                "state": "open",
            },
        },
    ),
    ({"repository": "acme", "title": "x"}, {"error": "repository must look like owner/name"}),
    ({"repository": "acme/rocket", "title": " \t"}, {"error": "title may not be blank"}),
    (
        {"repository": "acme/rocket", "title": "t" * 257},
        {"error": "title is longer than 256 characters"},
    ),
    (
        {"repository": "acme/rocket", "title": "many", "labels": [f"l{i}" for i in range(11)]},
        {"error": "an issue takes at most 10 labels, got 11"},
    ),
]
