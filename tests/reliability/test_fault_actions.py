"""Faults of one action on a server's own runners: its process SIGKILLed mid-run, and a poison
callable that kills the python worker running it every time."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from fault_ledger import starts
from fault_rig import Rig
from tests.helpers.faults import journal_step
from tests.helpers.polling import wait_for
from tests.helpers.processes import is_running

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]


def test_a_sigkilled_action_is_retried_or_fails_by_its_policy(module_rig: Rig) -> None:
    task_id = module_rig.submit(
        {
            "type": "fault-action-kill",
            "subtasks": [
                # Killed on its first attempt; its second runs at once and succeeds.
                journal_step("retried", module_rig.journal, 60, retries=1, mode="first-slow"),
                journal_step("final", module_rig.journal, 60, retries=0),
            ],
        }
    )
    first = wait_for(
        lambda: (runs := starts(module_rig.runs(), task_id)) and len(runs) == 2 and runs,
        30,
        "both actions should have started",
    )
    for run in first:
        os.kill(run.pid, signal.SIGKILL)

    module_rig.ended(timeout_s=30)

    task = module_rig.task(task_id)
    by_id = {s["id"]: s for s in task["subtasks"]}
    assert task["status"] == "failed", task
    assert (by_id["retried"]["status"], by_id["retried"]["attempts"]) == ("succeeded", 2)
    assert (by_id["final"]["status"], by_id["final"]["attempts"]) == ("failed", 1)
    assert by_id["final"]["exitCode"] == -signal.SIGKILL
    assert by_id["final"]["failureClass"] == "resource"
    assert not [r.pid for r in first if is_running(r.pid)]
    runs = module_rig.runs()
    assert [r.attempt for r in starts(runs, task_id, "retried")] == [1, 2]
    assert [r.attempt for r in starts(runs, task_id, "final")] == [1]
    module_rig.check()


@pytest.mark.parametrize("callable_name", ["crash_worker", "exit_worker"])
def test_a_poison_callable_fails_after_its_retries_without_a_hot_loop(
    module_rig: Rig, callable_name: str
) -> None:
    retries = 2
    tag = uuid.uuid4().hex
    kwargs = {"journal": str(module_rig.journal), "tag": tag, "subtask": "poison"}
    started = time.monotonic()
    task_id = module_rig.submit(
        {
            "type": "fault-poison",
            "subtasks": [
                {
                    "id": "poison",
                    "agent": "devops",
                    "retries": retries,
                    "action": {
                        "kind": "python",
                        "callable": f"tests.helpers.faults:{callable_name}",
                        "kwargs": kwargs,
                    },
                },
                {
                    "id": "after",
                    "dependsOn": ["poison"],
                    "action": {"kind": "shell", "argv": ["true"]},
                },
            ],
        }
    )

    module_rig.aliases[tag] = task_id
    module_rig.ended(timeout_s=60)

    took = time.monotonic() - started
    task = module_rig.task(task_id)
    by_id = {s["id"]: s for s in task["subtasks"]}
    poison = by_id["poison"]
    assert task["status"] == "failed", task
    assert (poison["status"], poison["attempts"]) == ("failed", retries + 1), poison
    assert poison["reason"] == "worker_died", poison
    assert by_id["after"]["status"] == "skipped"
    # Bounded: the worker ran it once per attempt, no more, and the backoffs are short here.
    runs = starts(module_rig.runs(), task_id, "poison")
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert len({r.pid for r in runs}) == retries + 1, "each attempt needs a new worker"
    assert took < 30, f"the poison took {took:.1f} s to fail"
    print(f"poison {callable_name}: {len(runs)} runs in {took:.1f} s")
    module_rig.check()
