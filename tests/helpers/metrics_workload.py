"""Real work for the metrics tests: tasks that succeed, fail, loop, overload a downstream,
trip a downstream's breaker and are denied; a pool scaled up and down; a tool call and a
foreign site refused. After it, every series the alerts and dashboards read has a value that
says something (a ratio with a denominator, a limit on a downstream, a loop counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.ports import closed_port

ROOT = Path(__file__).resolve().parents[2]
# The exit code by which the workload's `sh` says "overloaded" (agents.yaml's `overload`).
OVERLOADED_EXIT = 75


class Client(Protocol):
    """httpx.Client or FastAPI's TestClient."""

    def get(self, url: str, **kwargs: Any) -> Any: ...

    def post(self, url: str, **kwargs: Any) -> Any: ...


def write_config(config_dir: Path) -> Path:
    """config/agents.yaml, with `sh` exiting OVERLOADED_EXIT meaning "overloaded" in every
    pool; returns the directory to give the server as REYNOLDS_CONFIG_DIR."""
    agents = yaml.safe_load((ROOT / "config/agents.yaml").read_text(encoding="utf-8"))
    for pool in agents["pools"].values():
        pool["overload"] = {"sh": {"exitCodes": [OVERLOADED_EXIT]}}
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "agents.yaml").write_text(yaml.safe_dump(agents), encoding="utf-8")
    return config_dir


def _shell(name: str, *argv: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "action": {"kind": "shell", "argv": list(argv)}, **options}


# The server settings the workload needs: a downstream's breaker opens at the second failure
# in a row and probes again a second later.
SETTINGS: dict[str, Any] = {"breaker_failures": 2, "breaker_cooldown_s": 1.0}


def tasks() -> dict[str, tuple[dict[str, Any], str]]:
    """Task type → (task, the status it ends with)."""
    nowhere = f"http://127.0.0.1:{closed_port()}/"
    return {
        "parallel": (
            {"components": ["a", "b", "c"], "steps": [_shell("nap", "sleep", "0.2")]},
            "succeeded",
        ),
        "chain": (
            {"steps": [_shell("first", "true"), _shell("second", "sleep", "0.1", after=["first"])]},
            "succeeded",
        ),
        "failing": ({"steps": [_shell("fail", "false")]}, "failed"),
        # The third identical failure is a loop (`repeated`): the task is loop_blocked.
        "looping": ({"steps": [_shell("again", "false", retries=3)]}, "loop_blocked"),
        # Overloaded twice: the `exec:sh` downstream gets an adaptive limit, the task fails.
        "overloading": (
            {"steps": [_shell("busy", "sh", "-c", f"exit {OVERLOADED_EXIT}", retries=1)]},
            "failed",
        ),
        # Refused twice by a closed port: that downstream's breaker opens, the task fails.
        "unreachable": (
            {"steps": [{"name": "call", "retries": 1, "action": {"kind": "http", "url": nowhere}}]},
            "failed",
        ),
        # Not a loopback host nor one a pool lists: denied before anything is sent.
        "denied": (
            {
                "steps": [
                    {"name": "fetch", "action": {"kind": "http", "url": "http://example.invalid/"}}
                ]
            },
            "failed",
        ),
    }


def call(client: Client, tool: str, **arguments: Any) -> Any:
    return client.post(f"/mcp/tools/{tool}", json={"arguments": arguments})


def run_workload(client: Client) -> None:
    """Have a tool call and a request from a foreign site refused, run every task of `tasks()`
    to its end (each ending as expected), scale a pool up and down, and refuse the same two
    requests again (so that their series, new at the first, grow during the work)."""
    refuse(client)
    ended: dict[str, str] = {}
    expected: dict[str, str] = {}
    for kind, (task, status) in tasks().items():
        task = {"type": f"metrics-{kind}", **task}
        answer = call(client, "orchestrate_task", task=task, wait=True)
        assert answer.status_code == 200, answer.text
        ended[kind], expected[kind] = answer.json()["structuredContent"]["status"], status
    assert ended == expected
    for replicas in (4, 3):
        answer = call(client, "scale_agents", agentType="code", replicas=replicas)
        assert answer.status_code == 200, answer.text
    refuse(client)


def refuse(client: Client) -> None:
    """A tool call refused as invalid (422), a request naming a foreign Host refused (421)."""
    refused = call(client, "orchestrate_task", task={"type": "x", "steps": "not a list"})
    assert refused.status_code == 422, refused.text
    rebound = client.get("/status", headers={"Host": "evil.example"})
    assert rebound.status_code == 421, rebound.text


def series_with_values(text: str) -> dict[str, list[float]]:
    """Series name (`_total`, `_bucket` … included) → its samples' values, from a Prometheus
    text exposition."""
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample.value)
    return out


def exposed_total(text: str, name: str, **labels: str) -> float:
    """The sum of series `name` whose labels include `labels`, in a text exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
