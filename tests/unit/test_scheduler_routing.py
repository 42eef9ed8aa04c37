"""The scheduler routes subtasks to pools by the task's approach: under hybrid_intelligent,
subtasks that match no pool are spread by free share, taking turns among equally free pools."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.scheduler import by_id, scheduler, shell_step

from reynolds.core.pools import PoolSet

pytestmark = pytest.mark.anyio

UNMATCHED = ["u0", "u1", "u2", "u3"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def three_pools() -> PoolSet:
    """devops, platform and code (3, 2 and 3 replicas); only platform knows `terraform`."""

    def spec(name: str, replicas: int, keywords: list[str]) -> dict[str, object]:
        return {
            "name": name,
            "replicas": {"min": 1, "max": 4, "initial": replicas},
            "capabilities": {"keywords": keywords},
        }

    return PoolSet.from_mapping(
        {
            "pools": {
                "devops": spec("devops", 3, []),
                "platform": spec("platform", 2, ["terraform"]),
                "code": spec("code", 3, []),
            }
        },
        source="test",
    )


async def one_at_a_time(approach: str) -> dict[str, dict[str, Any]]:
    """Run four unmatched subtasks and one that matches platform, one at a time, under
    `approach`; the subtasks by id."""
    steps = [shell_step(sid) for sid in UNMATCHED]
    steps.append(shell_step("matched", description="terraform plan"))
    async with scheduler(pool_set=three_pools()) as s:
        result = await s.run(
            {"type": "spread", "subtasks": steps}, {"approach": approach, "maxConcurrency": 1}
        )
    assert result["status"] == "succeeded"
    return by_id(result)


async def test_one_at_a_time_unmatched_subtasks_all_land_on_the_first_pool_when_optimized() -> None:
    subs = await one_at_a_time("parallel_optimized")
    assert [subs[sid]["agentType"] for sid in UNMATCHED] == ["devops"] * 4
    assert subs["matched"]["agentType"] == "platform"


async def test_one_at_a_time_unmatched_subtasks_take_turns_across_pools_under_hybrid() -> None:
    subs = await one_at_a_time("hybrid_intelligent")
    assert [subs[sid]["agentType"] for sid in UNMATCHED] == ["devops", "platform", "code", "devops"]
    assert "largest free share" in subs["u1"]["routing"]["reason"]
    assert subs["matched"]["agentType"] == "platform"
    assert subs["matched"]["routing"]["reason"] == "capability match"
