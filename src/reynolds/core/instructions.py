"""`{instruction}`: what one subtask's agent is asked to do, in words it can act on alone.

An agent command-line tool (a coding agent's non-interactive mode, say), an `llm` prompt or an
MCP tool gets one subtask of a larger task; it sees nothing of the others. The instruction
says what the whole task is, which part is this agent's, what the others are doing meanwhile,
and what the step means in the task's pattern.
"""

from __future__ import annotations

# What each step of a decomposition pattern asks for (core/decomposition.py).
STEP_MEANING: dict[str, str] = {
    "migrate": "Migrate {component}: make the change for this component only.",
    "validate": "Validate the whole result: check that the earlier steps succeeded together.",
    "setup-infrastructure": "Set up the infrastructure the deployments below need.",
    "deploy": "Deploy {component}.",
    "implement": "Implement {component}.",
    "test": "Test {component}: write or run its tests and fix what fails.",
    "integrate": "Integrate the components, which were implemented and tested separately.",
    "analyze": "Analyze {component} and report what you find.",
    "aggregate": "Aggregate the analyses of the components into one report.",
    "prepare": "Prepare what the task needs before its components are done.",
    "execute": "Do the task for {component}.",
}


def instruction(
    *,
    task_type: str,
    description: str,
    step: str | None,
    component: str | None,
    pattern: str | None,
    components: int,
    own: str = "",
) -> str:
    """The instruction for one subtask: the task, this agent's part, and what the others do."""
    lines = [f"Task ({task_type}): {description.strip() or task_type}"]
    part = " ".join(p for p in (step, component) if p)
    if part:
        lines.append(f"Your part: {part}.")
    meaning = STEP_MEANING.get(step or "") if pattern else None
    if meaning:
        lines.append(meaning.replace("{component}", component or "the task"))
    if own.strip():
        lines.append(own.strip())
    if component and components > 1:
        lines.append(
            f"Other agents handle the other {components - 1} component(s) at the same time: "
            "change nothing that belongs to them."
        )
    return "\n".join(lines)
