"""The metrics: ratios kept as counters of their numerator and denominator (what PromQL divides
over a window), the contract's ratio gauges over the tasks of a recent window, slot-seconds
integrated per pool, and known label values present from the start."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.scheduler import START_S, FakeClock, scheduler, shell_step

from reynolds.adapters.metrics import RATIO_WINDOW_S, Metrics
from reynolds.core.reporting import TaskSeconds, run_metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(series name, sorted labels) → value, `_created` series left out."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def seconds(makespan: float, busy: float, concurrency: int, overhead: float) -> TaskSeconds:
    return TaskSeconds(makespan, busy, makespan * concurrency, overhead)


def test_a_tasks_seconds_are_its_ratios_times_its_makespan_and_capacity() -> None:
    rows = [
        {"status": "succeeded", "started_at": 10.0, "finished_at": 13.0},
        {"status": "succeeded", "started_at": 10.0, "finished_at": 11.0},
    ]
    figures = run_metrics(10.0, 14.0, rows, 2, ideal_makespan_s=3.0)
    got = TaskSeconds.of(figures, 2)
    assert got.makespan_s == 4.0 and got.capacity_s == 8.0
    assert got.busy_s == pytest.approx(4.0)  # 3 s + 1 s of subtasks
    assert got.overhead_s == pytest.approx(1.0)  # 4 s against a perfect 3 s


def test_the_ratio_counters_add_up_every_task_weighed_by_its_size() -> None:
    metrics = Metrics(clock=FakeClock())
    metrics.task_ended("succeeded", seconds(100.0, 180.0, 2, 5.0))
    metrics.task_ended("failed", seconds(0.03, 0.0, 1, 0.021))  # one denied subtask
    assert value(metrics, "reynolds_parallel_execution_busy_seconds_total") == 180.0
    assert value(metrics, "reynolds_parallel_execution_capacity_seconds_total") == 200.03
    # The denied task's 70 % overhead hardly moves the ratio over both tasks.
    overhead = value(metrics, "reynolds_orchestration_overhead_ratio")
    assert overhead == pytest.approx(5.021 / 100.03) and overhead < 0.06
    assert value(metrics, "reynolds_parallel_execution_ratio") == pytest.approx(180.0 / 200.03)
    assert value(metrics, "reynolds_tasks_total", status="failed") == 1


def test_the_ratio_gauges_forget_tasks_older_than_their_window() -> None:
    clock = FakeClock()
    metrics = Metrics(clock=clock)
    assert math.isnan(value(metrics, "reynolds_parallel_execution_ratio"))  # no task yet
    metrics.task_ended("succeeded", seconds(10.0, 5.0, 1, 1.0))
    clock.advance(RATIO_WINDOW_S / 2)
    metrics.task_ended("succeeded", seconds(10.0, 10.0, 1, 3.0))
    assert value(metrics, "reynolds_parallel_execution_ratio") == pytest.approx(0.75)
    clock.advance(RATIO_WINDOW_S / 2 + 1)
    assert value(metrics, "reynolds_parallel_execution_ratio") == pytest.approx(1.0)
    assert value(metrics, "reynolds_orchestration_overhead_ratio") == pytest.approx(0.3)
    clock.advance(RATIO_WINDOW_S)
    assert math.isnan(value(metrics, "reynolds_orchestration_overhead_ratio"))
    # The counters keep everything: a window is PromQL's to choose.
    assert value(metrics, "reynolds_orchestration_overhead_seconds_total") == 4.0


def test_slot_seconds_integrate_busy_and_available_slots_between_changes() -> None:
    metrics = Metrics(pools=["code"])
    metrics.pool_slots("code", 0, 3, 100.0)
    metrics.pool_slots("code", 2, 3, 110.0)  # 10 s idle, 3 slots
    metrics.pool_slots("code", 1, 4, 120.0)  # 10 s with 2 of 3 busy
    metrics.pool_slots("code", 5, 2, 125.0)  # 5 s with 1 of 4 busy; then more busy than slots
    metrics.pool_slots("code", 0, 2, 130.0)  # 5 s with 2 of 2 busy, never more
    assert value(metrics, "reynolds_agent_busy_slot_seconds_total", agent_type="code") == 35.0
    available = value(metrics, "reynolds_agent_available_slot_seconds_total", agent_type="code")
    assert available == 30.0 + 30.0 + 20.0 + 10.0


def test_known_label_values_start_at_zero() -> None:
    found = samples(Metrics(pools=["code", "devops"]))
    for status in ("succeeded", "failed", "cancelled", "loop_blocked"):
        assert found[("reynolds_tasks_total", (("status", status),))] == 0
    assert found[("reynolds_loop_prevention_loop_detected_total", (("reason", "repeated"),))] == 0
    for pool in ("code", "devops"):
        key = (("agent_type", pool), ("status", "failed"))
        assert found[("reynolds_subtasks_total", key)] == 0
        key = (("agent_type", pool), ("direction", "up"))
        assert found[("reynolds_scaling_events_total", key)] == 0
        assert found[("reynolds_agent_busy_slot_seconds_total", (("agent_type", pool),))] == 0
    key = (("decision", "denied"), ("kind", "action"))
    assert found[("reynolds_audit_records_total", key)] == 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_scheduler_reports_slots_task_seconds_and_audits() -> None:
    async with scheduler(replicas=4) as s:
        s.shell.takes_s["a"] = 2.0
        result = await s.run({"type": "one", "subtasks": [shell_step("a")]})

    assert result["status"] == "succeeded"
    work = [(busy, replicas, at - START_S) for pool, busy, replicas, at in s.metrics.slots]
    assert work[:2] == [(0, 4, 0.0), (1, 4, 0.0)]  # at start, then the attempt took a slot
    assert (0, 4, 2.0) in work[2:]  # and gave it back two seconds later
    (task,) = s.metrics.task_seconds
    assert (task.makespan_s, task.busy_s, task.capacity_s) == (2.0, 2.0, 2.0)
    assert task.overhead_s == 0.0
    assert ("action", "allowed") in s.metrics.audits
