"""Add labels to an issue, keeping the existing ones; matching ignores case."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/add_labels"


class AddLabelsController(Controller):
    """Add labels to an issue without duplicates (case-insensitive), up to a limit."""

    LIMIT = 10

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        current, wanted = self.require(request, "current", "add")
        merged: dict[str, str] = {}
        for label in [*current, *wanted]:
            key = self._key(label)
            if key and key not in merged:
                merged[key] = label.strip()
        if len(merged) > self.LIMIT:
            raise BadRequest(
                f"an issue carries at most {self.LIMIT} labels; this would make {len(merged)}"
            )
        existing = {self._key(label) for label in current}
        return {
            "labels": sorted(merged.values(), key=str.casefold),
            "added": [label for key, label in merged.items() if key not in existing],
        }

    @staticmethod
    def _key(label: str) -> str:
        return " ".join(label.split()).casefold()


TEST_CASES = [
    (
        {"current": ["bug", "Needs  Triage"], "add": ["BUG", "needs triage", " p1 ", "", "UX"]},
        {"labels": ["bug", "Needs  Triage", "p1", "UX"], "added": ["p1", "UX"]},
    ),
    ({"current": [], "add": []}, {"labels": [], "added": []}),
    (
        {"current": [f"c{i}" for i in range(8)], "add": ["x", "y", "z"]},
        {"error": "an issue carries at most 10 labels; this would make 11"},
    ),
    ({"current": []}, {"error": "missing field(s): add"}),
]
