"""`reynolds health`: checks of a running server, as a report with a verdict and an exit code.

Exit codes: 0 healthy, 2 warnings, 1 failures. The report keeps the seed's snake_case keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from reynolds.entrypoints.cli.client import ClientError, Health, ReynoldsClient

Verdict = Literal["pass", "warn", "fail"]

_PASS_WORDS = frozenset({"ok", "healthy", "pass", "passed", "up", "ready", "true", "closed"})
_WARN_WORDS = frozenset({"warn", "warning", "degraded", "half_open", "half-open"})
_VERDICT_KEYS = ("status", "ok", "healthy")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")

START_HINT = "Start Reynolds with ./start-orchestration.sh start, then check again."


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, verdict, a one-line message, details and what to do about it."""

    check: str
    status: Verdict
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    recommendation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "details": self.details,
        }


def run_checks(client: ReynoldsClient) -> list[CheckResult]:
    """Ask the server (`/health`, `/status`) and turn the answers into checks."""
    try:
        health = client.health()
    except ClientError as exc:
        return [
            CheckResult("server", "fail", str(exc), {"url": client.base_url}, START_HINT),
            CheckResult("status_endpoint", "fail", "not reachable", {}, START_HINT),
        ]
    results = [server_check(health, client.base_url)]
    try:
        status: dict[str, Any] | None = client.status()
        error = None
    except ClientError as exc:
        status, error = None, str(exc)
    results.append(status_check(status, error))
    results.extend(checks_from_health_body(health.body))
    return results


def server_check(health: Health, base_url: str) -> CheckResult:
    details = {"url": base_url, "http_status": health.status_code}
    if health.healthy:
        return CheckResult("server", "pass", f"healthy at {base_url}", details)
    failing = [name for name, value in _checks(health.body).items() if _verdict(value)[0] == "fail"]
    message = f"/health answered {health.status_code} {health.body.get('status', '')}".strip()
    if failing:
        message += f"; failing: {', '.join(failing)}"
    return CheckResult(
        "server", "fail", message, details, "Read the server log: ./start-orchestration.sh logs"
    )


def status_check(status: dict[str, Any] | None, error: str | None) -> CheckResult:
    if status is None:
        hint = (
            "Set REYNOLDS_API_TOKEN (or secrets/api_token.txt) to the server's token."
            if error and "REYNOLDS_API_TOKEN" in error
            else "Read the server log: ./start-orchestration.sh logs"
        )
        return CheckResult("status_endpoint", "fail", error or "no answer", {}, hint)
    keys = ("version", "backend", "uptimeSeconds")
    details: dict[str, Any] = {key: status[key] for key in keys if key in status}
    details["pools"] = len(status.get("pools") or [])
    return CheckResult("status_endpoint", "pass", "/status answers", details)


def checks_from_health_body(body: dict[str, Any]) -> list[CheckResult]:
    """Each entry of `/health`'s `checks` (nested groups such as pools flattened one level)."""
    results = []
    for name, value in _checks(body).items():
        if isinstance(value, dict) and value and not any(k in value for k in _VERDICT_KEYS):
            for sub, sub_value in value.items():
                results.append(_from_value(f"{name}.{sub}", sub_value))
        else:
            results.append(_from_value(name, value))
    return results


def overall_status(results: list[CheckResult]) -> str:
    verdicts = {r.status for r in results}
    if "fail" in verdicts:
        return "unhealthy"
    if "warn" in verdicts:
        return "warning"
    return "healthy"


def exit_code(results: list[CheckResult]) -> int:
    """0 healthy, 2 warnings, 1 failures."""
    return {"healthy": 0, "warning": 2, "unhealthy": 1}[overall_status(results)]


def recommendations(results: list[CheckResult]) -> list[str]:
    seen: dict[str, None] = {}
    for result in results:
        if result.status != "pass" and result.recommendation:
            seen.setdefault(result.recommendation, None)
    return list(seen)


def build_report(
    results: list[CheckResult], *, timestamp: datetime, duration_s: float
) -> dict[str, Any]:
    """The exported report: `{"health_check": {timestamp, duration_seconds, summary, ...}}`."""
    summary = {
        "total_checks": len(results),
        "passed": sum(r.status == "pass" for r in results),
        "warnings": sum(r.status == "warn" for r in results),
        "failed": sum(r.status == "fail" for r in results),
        "overall_status": overall_status(results),
    }
    return {
        "health_check": {
            "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
            "duration_seconds": round(duration_s, 3),
            "summary": summary,
            "results": [r.to_dict() for r in results],
            "recommendations": recommendations(results),
        }
    }


def render_text(report: dict[str, Any]) -> str:
    """The report as plain text, for `--format text`."""
    body = report["health_check"]
    summary = body["summary"]
    lines = [f"Reynolds health check at {body['timestamp']} ({body['duration_seconds']} s)", ""]
    for result in body["results"]:
        lines.append(f"[{result['status'].upper():4}] {result['check']}: {result['message']}")
    lines += [
        "",
        f"Summary: {summary['total_checks']} checks, {summary['passed']} passed, "
        f"{summary['warnings']} warnings, {summary['failed']} failed: "
        f"{summary['overall_status']}",
    ]
    if body["recommendations"]:
        lines += ["", "Recommendations:"] + [f"  - {r}" for r in body["recommendations"]]
    return "\n".join(lines) + "\n"


def report_path(directory: Path, when: datetime, fmt: str) -> Path:
    """`health-report-YYYYmmdd-HHMMSS.json` (or `.txt`) in `directory`."""
    suffix = "json" if fmt == "json" else "txt"
    return directory / f"health-report-{when.strftime('%Y%m%d-%H%M%S')}.{suffix}"


def _checks(body: dict[str, Any]) -> dict[str, Any]:
    checks = body.get("checks")
    return checks if isinstance(checks, dict) else {}


def _from_value(name: str, value: Any) -> CheckResult:
    verdict, message, details = _verdict(value)
    given = details.pop("recommendation", None)
    hint = None if verdict == "pass" else (given or _hint_for(name, message))
    return CheckResult(name, verdict, message, details, hint)


def _verdict(value: Any) -> tuple[Verdict, str, dict[str, Any]]:
    """How one `/health` check value reads: a bool, a word, or a mapping with a status."""
    if isinstance(value, bool):
        return ("pass", "ok", {}) if value else ("fail", "failed", {})
    if isinstance(value, str):
        return _word_verdict(value), value, {}
    if isinstance(value, dict):
        raw = next((value[k] for k in _VERDICT_KEYS if k in value), None)
        verdict = (
            _word_verdict(str(raw).lower())
            if not isinstance(raw, bool)
            else ("pass" if raw else "fail")
        )
        message = value.get("message") or value.get("error") or value.get("detail") or str(raw)
        details = {
            k: _redacted(v) for k, v in value.items() if k not in (*_VERDICT_KEYS, "message")
        }
        return verdict, _redacted(str(message)), details
    if value is None:
        return "fail", "no answer", {}
    return "pass", str(value), {}


def _redacted(value: Any) -> Any:
    """A URL's password never reaches the console or an exported report."""
    return _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


def _word_verdict(word: str) -> Verdict:
    word = word.strip().lower()
    if word in _PASS_WORDS:
        return "pass"
    if word in _WARN_WORDS:
        return "warn"
    return "fail"


def _hint_for(name: str, message: str) -> str:
    lowered = name.lower()
    if lowered.startswith(("store", "database", "db")):
        return "Check the store: REYNOLDS_DATABASE_URL and the database it names."
    if lowered.startswith(("cache", "redis")):
        return "Check REYNOLDS_REDIS_URL and the Redis server it names."
    if "pool" in lowered or "agent" in lowered:
        return "Inspect the agent pools: ./scale-agents.sh status"
    return f"Look into {name}: {message}"
