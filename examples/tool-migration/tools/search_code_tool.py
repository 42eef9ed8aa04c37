"""Build a code-search query and its URL from structured filters."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/search_code"


class SearchCodeController(Controller):
    """Build a GitHub code-search query from text and qualifiers such as repo and language."""

    QUALIFIERS = ("repo", "org", "language", "path", "extension", "filename")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        text = self.require(request, "text")
        unknown = sorted(set(request) - {"text", *self.QUALIFIERS})
        if unknown:
            raise BadRequest(f"unknown filter(s): {', '.join(unknown)}")
        terms = [self._quote(text)]
        for qualifier in self.QUALIFIERS:
            value = request.get(qualifier)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            terms.extend(f"{qualifier}:{self._quote(item)}" for item in values)
        query = " ".join(terms)
        url = "https://github.com/search?type=code&q=" + urllib.parse.quote(query, safe="")
        return {"q": query, "url": url}

    @staticmethod
    def _quote(value: Any) -> str:
        value = str(value).strip()
        if not value:
            raise BadRequest("search terms may not be empty")
        if any(char.isspace() or char in ':"' for char in value):
            return '"' + value.replace('"', '\\"') + '"'
        return value


TEST_CASES = [
    (
        {"text": "def handle", "language": "python", "repo": ["acme/rocket", "acme/anvil"]},
        {
            "q": '"def handle" repo:acme/rocket repo:acme/anvil language:python',
            "url": "https://github.com/search?type=code&q="
            "%22def%20handle%22%20repo%3Aacme%2Frocket%20repo%3Aacme%2Fanvil%20language%3Apython",
        },
    ),
    (
        {"text": "TODO", "path": "src/my dir", "extension": "py"},
        {
            "q": 'TODO path:"src/my dir" extension:py',
            "url": "https://github.com/search?type=code&q="
            "TODO%20path%3A%22src%2Fmy%20dir%22%20extension%3Apy",
        },
    ),
    ({"text": "x", "stars": ">10"}, {"error": "unknown filter(s): stars"}),
    ({"text": "  "}, {"error": "search terms may not be empty"}),
]
