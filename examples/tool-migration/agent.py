"""A scripted migration agent: acts on the instruction Reynolds gives a pattern subtask.

    python3 agent.py INSTRUCTION WORKDIR

It is what a pool's `executor` runs in place of a coding agent's non-interactive mode (one that
would read the same instruction and edit the same repository), so the migration example runs
end to end without a model: the task has no steps, the migration pattern makes one `migrate`
subtask per component and a final `validate`, and each gets `{instruction}`, for example

    Task (migration): Migrate 17 MCP tools from controller pattern to SDK pattern
    Your part: migrate CreateIssueTool.
    Migrate CreateIssueTool: make the change for this component only.
    Other agents handle the other 16 component(s) at the same time: ...

`Your part: migrate NAME` migrates and checks that tool (migrate_tool.py, check_tool.py);
`Your part: validate` checks every tool migrated so far. Anything else is refused, exit 2.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import catalog
import check_tool
import migrate_tool

PART = re.compile(r"^Your part: (\S+)(?: (\S+))?\.$", re.MULTILINE)


def act(instruction: str, workdir: Path) -> int:
    found = PART.search(instruction)
    if found is None:
        print("agent: the instruction names no part for me", file=sys.stderr)
        return 2
    step, component = found.group(1), found.group(2)
    if step == "migrate" and component:
        print(f"agent: migrating {component}")
        failed = migrate_tool.main([component, str(workdir)])
        return failed or check_tool.main([component, str(workdir)])
    if step == "validate":
        done = sorted(p.stem for p in (workdir / "sdk_tools").glob("*.py") if p.stem != "__init__")
        names = {source.module: name for name, source in catalog.tools().items()}
        failures = sum(check_tool.main([names[m], str(workdir)]) != 0 for m in done if m in names)
        print(f"agent: validated {len(done)} migrated tool(s), {failures} failed")
        return 1 if failures or not done else 0
    print(f"agent: I do not know how to {step!r}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: agent.py INSTRUCTION WORKDIR", file=sys.stderr)
        return 2
    return act(argv[0], Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
