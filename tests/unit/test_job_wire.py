"""What crosses the broker and the worker API: jobs and results as plain JSON."""

from __future__ import annotations

import json

from reynolds.core.models import PythonAction, ShellAction
from reynolds.services.actions import WIRE_TEXT_CHARS, Job, JobResult
from reynolds.services.ports import ActionResult


def test_a_job_survives_a_json_round_trip_with_its_action() -> None:
    job = Job(
        dispatch_id="d1",
        task_id="t1",
        subtask_id="deploy-api",
        attempt=2,
        dispatch=3,
        pool="devops",
        action=ShellAction(kind="shell", argv=["kubectl", "apply"], env={"A": "1"}),
        argv=["kubectl", "apply", "-f", "api.yaml"],
        timeout_s=30,
        output_cap_bytes=65536,
        lease_s=15,
    )
    wire = json.loads(json.dumps(job.model_dump(mode="json", by_alias=True)))
    assert wire["dispatchId"] == "d1" and wire["timeoutSeconds"] == 30
    assert Job.model_validate(wire) == job


def test_a_python_job_keeps_its_kind() -> None:
    action = PythonAction(kind="python", callable="pkg.mod:run", kwargs={"n": 1})
    job = Job(
        dispatch_id="d",
        task_id="t",
        subtask_id="s",
        attempt=1,
        dispatch=1,
        pool="code",
        action=action,
        timeout_s=1,
        output_cap_bytes=1024,
        lease_s=1,
    )
    again = Job.model_validate(job.model_dump(mode="json", by_alias=True))
    assert isinstance(again.action, PythonAction)
    assert again.action.kwargs == {"n": 1}


def test_a_long_output_is_cut_to_its_tail_and_marked_truncated() -> None:
    output = "x" * (WIRE_TEXT_CHARS + 10) + "END"
    wire = JobResult.of(ActionResult(True, exit_code=0, output=output, output_bytes=len(output)))
    assert len(wire.output) == WIRE_TEXT_CHARS
    assert wire.output.endswith("END")
    assert wire.truncated
    back = wire.to_result()
    assert (back.ok, back.exit_code, back.output_bytes) == (True, 0, len(output))


def test_a_short_result_comes_back_unchanged() -> None:
    result = ActionResult(False, exit_code=3, output="o", error="e", reason="exit", output_bytes=1)
    back = JobResult.of(result).to_result()
    assert (back.ok, back.exit_code, back.output, back.error, back.reason) == (
        False,
        3,
        "o",
        "e",
        "exit",
    )
    assert not back.truncated


def test_a_result_whose_output_holds_a_lone_surrogate_is_still_reported() -> None:
    # An http action's answer decoded in a charset of the remote server's choosing.
    result = ActionResult(True, exit_code=200, output="before \ud800 after", error="\udc80")
    wire = JobResult.of(result)
    back = JobResult.model_validate(json.loads(json.dumps(wire.model_dump(mode="json"))))
    assert back.output.startswith("before \ufffd") and back.output.endswith(" after")
    back.error.encode("utf-8")
