"""`./health-check.sh`: the report it exports lands in the caller's directory, and a store
made unreachable while the server runs fails it (exit 1), named, with what to do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli_support import CLI_TIMEOUT_S, Server, output
from failure_support import database

ROOT = Path(__file__).resolve().parents[2]


def health_check(server: Server, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "health-check.sh"), *args],
        env=server.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_the_report_lands_where_the_caller_is_and_names_an_unreachable_store(
    idle_server: Server, tmp_path: Path
) -> None:
    started = idle_server.run("start")
    assert started.returncode == 0, output(started)
    caller = tmp_path / "caller"
    caller.mkdir()
    healthy = health_check(idle_server, caller, "--export", "--format", "json")
    assert healthy.returncode == 0, output(healthy)
    (first,) = caller.glob("health-report-*.json")
    assert not list(ROOT.glob("health-report-*")), "written into the repository folder"
    checks = {r["check"] for r in json.loads(first.read_text())["health_check"]["results"]}
    assert {"store", "disk", "memory", "errorRate", "stuckSubtasks"} <= checks
    first.unlink()

    db = database(idle_server)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    failed = health_check(idle_server, caller, "--export", "--format", "json")
    assert failed.returncode == 1, output(failed)
    (report,) = caller.glob("health-report-*.json")
    body = json.loads(report.read_text())["health_check"]
    assert body["summary"]["overall_status"] == "unhealthy"
    store = next(r for r in body["results"] if r["check"] == "store")
    assert store["status"] == "fail" and str(db) in store["message"]
    assert any("REYNOLDS_DATABASE_URL" in advice for advice in body["recommendations"])
