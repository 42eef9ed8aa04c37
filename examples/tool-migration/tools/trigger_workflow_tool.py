"""Trigger a workflow: check the inputs against the workflow's declared inputs."""

from __future__ import annotations

from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/trigger_workflow"


class TriggerWorkflowController(Controller):
    """Check workflow_dispatch inputs against the declared ones and build the dispatch request."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        workflow, ref, declared = self.require(request, "workflow", "ref", "declaredInputs")
        given = request.get("inputs", {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise BadRequest(f"{workflow} has no input(s) named {', '.join(unknown)}")
        inputs = {}
        for name, spec in sorted(declared.items()):
            if name in given:
                inputs[name] = self._coerce(name, spec, given[name])
            elif "default" in spec:
                inputs[name] = self._coerce(name, spec, spec["default"])
            elif spec.get("required"):
                raise BadRequest(f"input {name} is required")
        return {"workflow": workflow, "ref": ref, "inputs": inputs}

    def _coerce(self, name: str, spec: dict[str, Any], value: Any) -> str:
        kind = spec.get("type", "string")
        if kind == "boolean":
            text = str(value).lower()
            if text not in ("true", "false"):
                raise BadRequest(f"input {name} must be true or false")
            return text
        if kind == "choice":
            if value not in spec["options"]:
                raise BadRequest(f"input {name} must be one of {', '.join(spec['options'])}")
            return str(value)
        if kind == "number":
            return self._number(name, value)
        return str(value)

    @staticmethod
    def _number(name: str, value: Any) -> str:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BadRequest(f"input {name} must be a number") from None
        return str(int(number)) if number.is_integer() else str(number)


_DECLARED = {
    "environment": {"type": "choice", "options": ["staging", "production"], "required": True},
    "dry_run": {"type": "boolean", "default": True},
    "replicas": {"type": "number"},
    "note": {"type": "string"},
}

TEST_CASES = [
    (
        {
            "workflow": "deploy.yml",
            "ref": "main",
            "declaredInputs": _DECLARED,
            "inputs": {"environment": "staging", "replicas": "3.0"},
        },
        {
            "workflow": "deploy.yml",
            "ref": "main",
            "inputs": {"dry_run": "true", "environment": "staging", "replicas": "3"},
        },
    ),
    (
        {
            "workflow": "deploy.yml",
            "ref": "v2",
            "declaredInputs": _DECLARED,
            "inputs": {"environment": "production", "dry_run": False, "note": 42, "replicas": 2.5},
        },
        {
            "workflow": "deploy.yml",
            "ref": "v2",
            "inputs": {
                "dry_run": "false",
                "environment": "production",
                "note": "42",
                "replicas": "2.5",
            },
        },
    ),
    (
        {"workflow": "deploy.yml", "ref": "main", "declaredInputs": _DECLARED, "inputs": {}},
        {"error": "input environment is required"},
    ),
    (
        {
            "workflow": "deploy.yml",
            "ref": "main",
            "declaredInputs": _DECLARED,
            "inputs": {"environment": "qa"},
        },
        {"error": "input environment must be one of staging, production"},
    ),
    (
        {
            "workflow": "deploy.yml",
            "ref": "main",
            "declaredInputs": _DECLARED,
            "inputs": {"environment": "staging", "replicas": "many"},
        },
        {"error": "input replicas must be a number"},
    ),
    (
        {"workflow": "ci.yml", "ref": "main", "declaredInputs": {}, "inputs": {"force": "1"}},
        {"error": "ci.yml has no input(s) named force"},
    ),
]
