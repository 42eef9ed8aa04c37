"""What an agent is told (`{instruction}`) and which credentials a pool may hand its actions."""

from __future__ import annotations

import pytest

from reynolds.core.instructions import instruction
from reynolds.core.pools import PoolSet
from reynolds.core.substitution import substitute
from reynolds.errors import InvalidInput


def test_an_instruction_names_the_task_this_agent_s_part_and_the_others() -> None:
    text = instruction(
        task_type="migration",
        description="Migrate 17 MCP tools to the SDK pattern",
        step="migrate",
        component="CreateIssueTool",
        pattern="migration",
        components=17,
    )
    assert text.splitlines() == [
        "Task (migration): Migrate 17 MCP tools to the SDK pattern",
        "Your part: migrate CreateIssueTool.",
        "Migrate CreateIssueTool: make the change for this component only.",
        "Other agents handle the other 16 component(s) at the same time: change nothing that "
        "belongs to them.",
    ]


def test_a_whole_task_step_and_a_step_s_own_description() -> None:
    text = instruction(
        task_type="t",
        description="",
        step="validate",
        component=None,
        pattern="migration",
        components=3,
        own="Run the integration suite.",
    )
    assert text.splitlines() == [
        "Task (t): t",
        "Your part: validate.",
        "Validate the whole result: check that the earlier steps succeeded together.",
        "Run the integration suite.",
    ]


def test_the_instruction_is_substituted_as_one_argument() -> None:
    argv = substitute(
        ["agent", "-p", "{instruction}"],
        {"instruction": "Task (x): y\nYour part: a; rm -rf /."},
        allow_option_values=False,
    )
    assert argv == ["agent", "-p", "Task (x): y\nYour part: a; rm -rf /."]


def pools(secrets: dict[str, str]) -> PoolSet:
    return PoolSet.from_mapping({"pools": {"devops": {"name": "d", "secrets": secrets}}})


def test_a_pool_declares_its_agents_credentials_by_variable_and_file() -> None:
    spec = pools({"GH_TOKEN": "gh_token.txt", "AZURE_KEY": "azure.key"}).pools["devops"]
    assert spec.secrets == {"GH_TOKEN": "gh_token.txt", "AZURE_KEY": "azure.key"}


@pytest.mark.parametrize(
    ("secrets", "said"),
    [
        ({"GH_TOKEN": "api_token.txt"}, "the server's own secret"),
        ({"PGPASSWORD": "db_password.txt"}, "the server's own secret"),
        ({"GH_TOKEN": "../etc/passwd"}, "not a file name"),
        ({"GH_TOKEN": "sub/token.txt"}, "not a file name"),
        ({"REYNOLDS_API_TOKEN": "t.txt"}, "Reynolds' own"),
        ({"LD_PRELOAD": "t.txt"}, "LD_PRELOAD"),
        ({"9X": "t.txt"}, "not a valid environment variable name"),
    ],
)
def test_what_a_pool_may_not_hand_out_is_refused_at_start(
    secrets: dict[str, str], said: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        pools(secrets)
    assert "secrets" in refused.value.message and said in refused.value.message
