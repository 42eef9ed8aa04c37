"""Plan the membership changes that bring a team to its desired state."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/team_membership"


class TeamMembershipController(Controller):
    """Plan the additions, removals and role changes that make a team match the desired list."""

    ROLES = ("maintainer", "member")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        current, desired = self.require(request, "current", "desired")
        have = {self._login(user): role for user, role in current.items()}
        want = {self._login(user): role for user, role in desired.items()}
        wrong = sorted(user for user, role in want.items() if role not in self.ROLES)
        if wrong:
            raise BadRequest(f"role must be maintainer or member for: {', '.join(wrong)}")
        keep_extra = bool(request.get("keepExtra", False))
        changes = sorted(user for user in want if user in have and have[user] != want[user])
        return {
            "add": [{"login": user, "role": want[user]} for user in sorted(set(want) - set(have))],
            "remove": [] if keep_extra else sorted(set(have) - set(want)),
            "changeRole": [
                {"login": user, "from": have[user], "to": want[user]} for user in changes
            ],
            "unchanged": sum(1 for user in want if have.get(user) == want[user]),
        }

    @staticmethod
    def _login(user: str) -> str:
        return user.strip().lstrip("@").lower()


TEST_CASES = [
    (
        {
            "current": {"Ann": "maintainer", "bob": "member", "carl": "member"},
            "desired": {"@ann": "maintainer", "Bob": "maintainer", "dora": "member"},
        },
        {
            "add": [{"login": "dora", "role": "member"}],
            "remove": ["carl"],
            "changeRole": [{"login": "bob", "from": "member", "to": "maintainer"}],
            "unchanged": 1,
        },
    ),
    (
        {"current": {"carl": "member"}, "desired": {}, "keepExtra": True},
        {"add": [], "remove": [], "changeRole": [], "unchanged": 0},
    ),
    (
        {"current": {}, "desired": {"eve": "owner", "al": "admin"}},
        {"error": "role must be maintainer or member for: al, eve"},
    ),
]
