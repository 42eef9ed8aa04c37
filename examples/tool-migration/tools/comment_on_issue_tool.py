"""Compose an issue comment: an optional quote, mentions, the body, and a size cap."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/comment_on_issue"


class CommentOnIssueController(Controller):
    """Compose a comment on an issue with a quote and mentions, cut to the maximum size."""

    MAX_BODY = 65536

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        number, body = self.require(request, "issue", "body")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise BadRequest("issue must be a positive issue number")
        body = body.strip()
        if not body:
            raise BadRequest("the comment body may not be blank")
        parts = []
        if request.get("quote"):
            parts.append("\n".join("> " + line for line in request["quote"].splitlines()))
        mentions = self._mentions(request.get("mention", []))
        if mentions:
            parts.append(" ".join(mentions))
        parts.append(body)
        text = "\n\n".join(parts)
        truncated = len(text) > self.MAX_BODY
        if truncated:
            text = text[: self.MAX_BODY - 1] + "…"
        return {"issue": number, "body": text, "truncated": truncated}

    @staticmethod
    def _mentions(users: list[str]) -> list[str]:
        handles: list[str] = []
        for user in users:
            handle = "@" + user.strip().lstrip("@")
            if handle != "@" and handle not in handles:
                handles.append(handle)
        return handles


TEST_CASES = [
    (
        {
            "issue": 12,
            "body": " Fixed in #13. ",
            "quote": "It crashes\non start",
            "mention": ["@ann", "bob", "ann", " "],
        },
        {
            "issue": 12,
            "body": "> It crashes\n> on start\n\n@ann @bob\n\nFixed in #13.",
            "truncated": False,
        },
    ),
    (
        {"issue": 1, "body": "x" * 70000},
        {"issue": 1, "body": "x" * 65535 + "…", "truncated": True},
    ),
    ({"issue": 0, "body": "hi"}, {"error": "issue must be a positive issue number"}),
    ({"issue": True, "body": "hi"}, {"error": "issue must be a positive issue number"}),
    ({"issue": 2, "body": "\n"}, {"error": "the comment body may not be blank"}),
]
