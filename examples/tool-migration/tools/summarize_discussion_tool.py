"""Summarise a discussion thread: participants, the answer and the most upvoted point."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/summarize_discussion"


class SummarizeDiscussionController(Controller):
    """Summarise a discussion: who took part, whether it is answered, and its highlight."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        discussion = self.require(request, "discussion")
        if not discussion.get("title"):
            raise BadRequest("the discussion needs a title")
        comments = discussion.get("comments", [])
        authors = Counter(comment["author"] for comment in comments)
        ranked = sorted(authors.items(), key=lambda pair: (-pair[1], pair[0]))
        # max keeps the first of equal elements: the earliest comment wins a tie in upvotes
        top = max(comments, key=lambda comment: comment.get("upvotes", 0), default=None)
        answer = next((comment for comment in comments if comment.get("isAnswer")), None)
        return {
            "title": discussion["title"],
            "comments": len(comments),
            "participants": sorted({discussion["author"], *authors}),
            "mostActive": ranked[0][0] if ranked else None,
            "answer": self._first_sentence(answer["body"]) if answer else None,
            "highlight": self._first_sentence(top["body"]) if top else None,
        }

    @staticmethod
    def _first_sentence(text: str) -> str:
        text = " ".join(text.split())
        match = re.match(r"(.+?[.!?])(\s|$)", text)
        return match.group(1) if match else text


TEST_CASES = [
    (
        {
            "discussion": {
                "title": "Why is the queue slow?",
                "author": "zoe",
                "comments": [
                    {"author": "bob", "body": "Same here.  Any idea?", "upvotes": 1},
                    {
                        "author": "ann",
                        "body": "Raise maxConcurrency. It defaults to 5.",
                        "upvotes": 4,
                        "isAnswer": True,
                    },
                    {"author": "bob", "body": "That fixed it!\nThanks.", "upvotes": 4},
                ],
            }
        },
        {
            "title": "Why is the queue slow?",
            "comments": 3,
            "participants": ["ann", "bob", "zoe"],
            "mostActive": "bob",
            "answer": "Raise maxConcurrency.",
            "highlight": "Raise maxConcurrency.",
        },
    ),
    (
        {"discussion": {"title": "Quiet", "author": "zoe"}},
        {
            "title": "Quiet",
            "comments": 0,
            "participants": ["zoe"],
            "mostActive": None,
            "answer": None,
            "highlight": None,
        },
    ),
    ({"discussion": {"author": "zoe"}}, {"error": "the discussion needs a title"}),
]
