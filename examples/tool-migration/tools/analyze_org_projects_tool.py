"""Analyse an organisation's project boards: progress, blocked items and stale items."""

from __future__ import annotations

from datetime import date
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/analyze_org_projects"


class AnalyzeOrgProjectsController(Controller):
    """Summarise project boards: progress per project, blocked and stale items, totals."""

    DONE = frozenset({"done", "closed", "merged"})
    STALE_AFTER_DAYS = 30

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        projects, today = self.require(request, "projects", "today")
        today = self._date(today)
        report = [self._project(project, today) for project in projects]
        report.sort(key=lambda entry: (entry["progress"], entry["name"]))
        return {
            "projects": report,
            "totals": {
                "projects": len(report),
                "items": sum(entry["items"] for entry in report),
                "blocked": sum(len(entry["blocked"]) for entry in report),
                "stale": sum(len(entry["stale"]) for entry in report),
            },
        }

    def _project(self, project: dict[str, Any], today: date) -> dict[str, Any]:
        items = project.get("items", [])
        open_items = [item for item in items if item["status"].lower() not in self.DONE]
        stale = [
            item["title"]
            for item in open_items
            if (today - self._date(item["updated"])).days > self.STALE_AFTER_DAYS
        ]
        done = len(items) - len(open_items)
        return {
            "name": project["name"],
            "items": len(items),
            "progress": round(100 * done / len(items)) if items else 0,
            "blocked": sorted(item["title"] for item in open_items if item.get("blocked")),
            "stale": sorted(stale),
        }

    @staticmethod
    def _date(text: Any) -> date:
        try:
            return date.fromisoformat(text)
        except (TypeError, ValueError):
            raise BadRequest(f"not an ISO date: {text!r}") from None


TEST_CASES = [
    (
        {
            "today": "2024-06-30",
            "projects": [
                {
                    "name": "Roadmap",
                    "items": [
                        {"title": "SSO", "status": "Done", "updated": "2024-06-01"},
                        {"title": "Audit log", "status": "In progress", "updated": "2024-05-01"},
                        {
                            "title": "Billing",
                            "status": "Todo",
                            "updated": "2024-06-20",
                            "blocked": True,
                        },
                    ],
                },
                {
                    "name": "Docs",
                    "items": [
                        {"title": "Guide", "status": "merged", "updated": "2024-01-01"},
                        {"title": "API", "status": "closed", "updated": "2024-02-01"},
                    ],
                },
                {"name": "Empty"},
            ],
        },
        {
            "projects": [
                {"name": "Empty", "items": 0, "progress": 0, "blocked": [], "stale": []},
                {
                    "name": "Roadmap",
                    "items": 3,
                    "progress": 33,
                    "blocked": ["Billing"],
                    "stale": ["Audit log"],
                },
                {"name": "Docs", "items": 2, "progress": 100, "blocked": [], "stale": []},
            ],
            "totals": {"projects": 3, "items": 5, "blocked": 1, "stale": 1},
        },
    ),
    ({"projects": [], "today": "30/06/2024"}, {"error": "not an ISO date: '30/06/2024'"}),
    ({"projects": []}, {"error": "missing field(s): today"}),
]
