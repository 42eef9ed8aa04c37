"""List an organisation's repositories, filtered, sorted and paginated."""

from __future__ import annotations

import math
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/list_repositories"


class ListRepositoriesController(Controller):
    """List repositories filtered by visibility and language, sorted and one page at a time."""

    SORT_KEYS = ("name", "stars", "updated")
    VISIBILITIES = ("all", "public", "private")
    MAX_PER_PAGE = 100

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        repositories = self.require(request, "repositories")
        visibility = request.get("visibility", "all")
        if visibility not in self.VISIBILITIES:
            raise BadRequest(f"visibility must be one of {', '.join(self.VISIBILITIES)}")
        sort = request.get("sort", "name")
        if sort not in self.SORT_KEYS:
            raise BadRequest(f"sort must be one of {', '.join(self.SORT_KEYS)}")
        page, per_page = request.get("page", 1), request.get("perPage", 30)
        if page < 1 or not 1 <= per_page <= self.MAX_PER_PAGE:
            raise BadRequest(f"page starts at 1 and perPage is 1 to {self.MAX_PER_PAGE}")
        language = request.get("language")
        chosen = [
            repo
            for repo in repositories
            if visibility in ("all", repo["visibility"]) and self._speaks(repo, language)
        ]
        chosen.sort(key=lambda repo: repo["name"].lower())
        if sort != "name":
            # stable: equal stars or dates keep the alphabetical order
            chosen.sort(key=lambda repo: repo[sort], reverse=True)
        start = (page - 1) * per_page
        return {
            "total": len(chosen),
            "page": page,
            "pages": math.ceil(len(chosen) / per_page),
            "repositories": [repo["name"] for repo in chosen[start : start + per_page]],
        }

    @staticmethod
    def _speaks(repo: dict[str, Any], language: str | None) -> bool:
        return language is None or (repo.get("language") or "").lower() == language.lower()


_REPOS = [
    {
        "name": "rocket",
        "visibility": "public",
        "language": "Python",
        "stars": 50,
        "updated": "2024-06-01",
    },
    {
        "name": "Anvil",
        "visibility": "private",
        "language": "Go",
        "stars": 5,
        "updated": "2024-06-03",
    },
    {
        "name": "decoy",
        "visibility": "public",
        "language": "python",
        "stars": 50,
        "updated": "2024-01-01",
    },
    {
        "name": "birdseed",
        "visibility": "public",
        "language": None,
        "stars": 0,
        "updated": "2024-06-02",
    },
]

TEST_CASES = [
    (
        {"repositories": _REPOS},
        {
            "total": 4,
            "page": 1,
            "pages": 1,
            "repositories": ["Anvil", "birdseed", "decoy", "rocket"],
        },
    ),
    (
        {"repositories": _REPOS, "language": "PYTHON", "sort": "stars"},
        {"total": 2, "page": 1, "pages": 1, "repositories": ["decoy", "rocket"]},
    ),
    (
        {
            "repositories": _REPOS,
            "visibility": "public",
            "sort": "updated",
            "perPage": 2,
            "page": 2,
        },
        {"total": 3, "page": 2, "pages": 2, "repositories": ["decoy"]},
    ),
    (
        {"repositories": _REPOS, "sort": "size"},
        {"error": "sort must be one of name, stars, updated"},
    ),
    ({"repositories": [], "perPage": 0}, {"error": "page starts at 1 and perPage is 1 to 100"}),
]
