"""`config/agents.yaml` holds executables, hosts and executor actions that reach system calls:
its values follow the rules of tool arguments, and a bad one stops the server at start with the
key named, never later at a spawn."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reynolds.bootstrap import load_pools
from reynolds.core.pools import PoolSet
from reynolds.errors import InvalidInput
from reynolds.settings import Settings

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "agents.yaml"


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    ("pool", "key", "value", "where"),
    [
        ("code", "executables", ["python3\x00"], "pools.code.executables.0"),
        ("devops", "httpHosts", ["example.org\x00"], "pools.devops.httpHosts.0"),
        ("platform", "name", "plat\x00form", "pools.platform.name"),
        (
            "code",
            "executor",
            {"kind": "shell", "argv": ["echo", "{component}\x00"]},
            "pools.code.executor.argv.1",
        ),
    ],
    ids=["executable", "http-host", "name", "executor-argv"],
)
def test_nul_in_a_pool_value_is_refused_naming_the_key(
    pool: str, key: str, value: Any, where: str
) -> None:
    data = config()
    data["pools"][pool][key] = value
    expected = f"agents.yaml: {where}: must not contain NUL (\\u0000)"
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        PoolSet.from_mapping(data)


def test_an_executor_may_not_set_a_start_up_variable_either() -> None:
    data = config()
    data["pools"]["code"]["executor"] = {"kind": "shell", "argv": ["true"], "env": {"ENV": "/x"}}
    with pytest.raises(InvalidInput, match="ENV may not be set by a step"):
        PoolSet.from_mapping(data)


def test_a_number_too_long_to_read_is_refused_naming_the_file(tmp_path: Path) -> None:
    settings = Settings(config_dir=tmp_path, home=tmp_path / "home")
    text = REPO_CONFIG.read_text(encoding="utf-8")
    text = text.replace(
        "replicas: {min: 1, max: 5, initial: 3}", f"replicas: {{min: {'1' * 5000}}}"
    )
    settings.agents_file.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=f"{re.escape(str(settings.agents_file))}: not valid"):
        load_pools(settings)
