"""Semantic search over the documentation pages.

Ranks a small corpus by the cosine similarity of word counts, ignoring stop words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/semantic_search"

DOCUMENTS = {
    "getting-started": "Install the orchestrator, start the server and submit a first task.",
    "agent-pools": "Agent pools run subtasks; a replica runs one subtask at a time.",
    "loop-prevention": "Loop prevention stops a task repeating a subtask, with a circuit breaker.",
    "scaling": "Scale agent pools up when the queue grows and down when replicas are idle.",
    "metrics": "Prometheus metrics report queue depth, utilization and subtask durations.",
}

STOP_WORDS = frozenset(
    {"a", "an", "and", "are", "at", "do", "does", "down", "how", "i", "is", "of", "one"}
    | {"the", "to", "up", "when", "with", "what"}
)


class SemanticSearchController(Controller):
    """Rank documentation pages by their similarity to a free-text query."""

    MAX_RESULTS = 3

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        query = self.require(request, "query")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("query must be a non-empty string")
        limit = request.get("limit", self.MAX_RESULTS)
        if not isinstance(limit, int) or not 1 <= limit <= self.MAX_RESULTS:
            raise BadRequest(f"limit must be an integer from 1 to {self.MAX_RESULTS}")
        wanted = self._vector(query)
        hits = []
        for page, text in DOCUMENTS.items():
            score = self._cosine(wanted, self._vector(text))
            if score > 0:
                hits.append({"page": page, "score": round(score, 3)})
        hits.sort(key=lambda hit: (-hit["score"], hit["page"]))
        return {"query": query, "results": hits[:limit]}

    def _vector(self, text: str) -> Counter[str]:
        words = re.findall(r"[a-z]+", text.lower())
        return Counter(self._stem(word) for word in words if word not in STOP_WORDS)

    @staticmethod
    def _stem(word: str) -> str:
        return word[:-1] if len(word) > 3 and word.endswith("s") else word

    @staticmethod
    def _cosine(left: Counter[str], right: Counter[str]) -> float:
        dot = sum(count * right[word] for word, count in left.items())
        if not dot:
            return 0.0
        norm_left = math.sqrt(sum(count * count for count in left.values()))
        norm_right = math.sqrt(sum(count * count for count in right.values()))
        return dot / (norm_left * norm_right)


TEST_CASES = [
    (
        {"query": "how do replicas run subtasks?", "limit": 2},
        {
            "query": "how do replicas run subtasks?",
            "results": [
                {"page": "agent-pools", "score": 0.833},
                {"page": "scaling", "score": 0.218},
            ],
        },
    ),
    (
        {"query": "circuit breaker"},
        {"query": "circuit breaker", "results": [{"page": "loop-prevention", "score": 0.5}]},
    ),
    ({"query": "kubernetes"}, {"query": "kubernetes", "results": []}),
    ({"query": "   "}, {"error": "query must be a non-empty string"}),
    ({"query": "queue", "limit": 9}, {"error": "limit must be an integer from 1 to 3"}),
    ({}, {"error": "missing field(s): query"}),
]
