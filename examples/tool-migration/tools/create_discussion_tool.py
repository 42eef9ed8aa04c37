"""Open a discussion in one of the repository's categories, with a URL slug."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/create_discussion"

CATEGORIES = ("announcements", "general", "ideas", "q-and-a", "show-and-tell")


class CreateDiscussionController(Controller):
    """Open a discussion in a known category and give it a readable slug."""

    SLUG_LENGTH = 60

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        title, category = self.require(request, "title", "category")
        category = "-".join(category.lower().replace("&", " and ").split())
        if category not in CATEGORIES:
            raise BadRequest(f"unknown category {category!r}; one of: {', '.join(CATEGORIES)}")
        slug = self._slug(title)
        if not slug:
            raise BadRequest("the title needs at least one letter or digit")
        return {
            "discussion": {
                "title": title.strip(),
                "category": category,
                "slug": slug,
                "body": request.get("body", ""),
            }
        }

    def _slug(self, text: str) -> str:
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        slug = "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))
        return slug[: self.SLUG_LENGTH].rstrip("-")


TEST_CASES = [
    (
        {"title": "Café: what's new in 2.0?", "category": "Announcements"},
        {
            "discussion": {
                "title": "Café: what's new in 2.0?",
                "category": "announcements",
                "slug": "cafe-what-s-new-in-2-0",
                "body": "",
            }
        },
    ),
    (
        {"title": " How do I scale pools? ", "category": "Q & A", "body": "Asking for a friend."},
        {
            "discussion": {
                "title": "How do I scale pools?",
                "category": "q-and-a",
                "slug": "how-do-i-scale-pools",
                "body": "Asking for a friend.",
            }
        },
    ),
    (
        {"title": "x" * 70, "category": "ideas"},
        {"discussion": {"title": "x" * 70, "category": "ideas", "slug": "x" * 60, "body": ""}},
    ),
    (
        {"title": "Hello", "category": "random"},
        {
            "error": "unknown category 'random'; one of: "
            "announcements, general, ideas, q-and-a, show-and-tell"
        },
    ),
    (
        {"title": "!!!", "category": "general"},
        {"error": "the title needs at least one letter or digit"},
    ),
]
