"""One pool process of a Celery worker, without Celery or an orchestrator: it starts as
Celery starts a pool process, then runs one shell job the way `run_action` runs it.

    python -m tests.helpers.worker_agent start
    python -m tests.helpers.worker_agent run ACTION_JSON TIMEOUT_S

`run` prints the result as one JSON line. Tests run it in a process of its own so that they
can kill it like a pool process dies.
"""

from __future__ import annotations

import json
import sys

from celery import signals

from reynolds.entrypoints import celery_agent
from reynolds.services.actions import Job


def main(args: list[str]) -> None:
    signals.worker_process_init.send(sender=None)
    if args[0] == "start":
        print(json.dumps({"started": True}), flush=True)
        return
    action, timeout_s = json.loads(args[1]), float(args[2])
    agent = celery_agent.Agent(celery_agent._settings(), "code", "test/1")
    job = Job.model_validate(
        {
            "dispatchId": "d-1",
            "taskId": "t-1",
            "subtaskId": "s-1",
            "attempt": 1,
            "dispatch": 1,
            "pool": agent.pool_key,
            "action": action,
            "timeoutSeconds": timeout_s,
            "outputCapBytes": 65536,
            "leaseSeconds": 30,
        }
    )
    result = agent.loop.run_until_complete(agent._execute(job))
    print(json.dumps({"reason": result.reason, "output": result.output}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
