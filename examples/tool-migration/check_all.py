"""Check every migrated tool at once (the merge step's check on the merged branch).

    python3 check_all.py WORKDIR

Runs `check_tool.check` for each of the tools in `tools/` against `WORKDIR/sdk_tools/`.
Exit status: 0 every tool passes, 1 one failed or is missing, 2 usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import catalog
from check_tool import CheckFailed, check

USAGE = "usage: check_all.py WORKDIR"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print(f"check_all: {USAGE}", file=sys.stderr)
        return 2
    workdir = Path(argv[0])
    failed = []
    for component, source in sorted(catalog.tools().items()):
        try:
            broken = check(source, workdir) > 0  # the number of failed cases
        except (CheckFailed, SyntaxError) as exc:
            print(f"check_all: {component}: {exc}", file=sys.stderr)
            broken = True
        if broken:
            failed.append(component)
    print(f"check_all: {len(catalog.tools()) - len(failed)} tools pass, {len(failed)} fail")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
