"""Validate a release: every service in the manifest deployed, intact, and nothing else.

    python3 validate_release.py TASK_ID

Checks that each service the manifest lists has its rendered configuration and record, that
the file still has the recorded SHA-256, that its template has not changed since the release
was set up, and that no service was deployed without being listed. On success writes
`validated.json` with a checksum of the whole release. Exit status: 0 valid, 1 not, 2 usage.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import release


def problems_of(folder: Path, entry: dict[str, Any]) -> list[str]:
    """What is wrong with one listed service's output; empty when it is fine."""
    name = entry["name"]
    record_path = folder / name / release.RECORD
    if not record_path.is_file():
        return [f"{name}: not deployed ({record_path} is missing)"]
    record = release.read_json(record_path, f"{name}'s record")
    config = folder / record["config"]
    if not config.is_file():
        return [f"{name}: the rendered configuration {config} is missing"]
    problems = []
    if release.sha256_of(config) != record["sha256"]:
        problems.append(f"{name}: {record['config']} changed after it was rendered")
    if record["templateSha256"] != entry["templateSha256"]:
        problems.append(f"{name}: the template changed between setup and deployment")
    return problems


def validate(task_id: str) -> tuple[list[str], dict[str, Any]]:
    """(problems, summary) for the release of `task_id`."""
    folder = release.release_dir(task_id)
    manifest = release.read_json(folder / release.MANIFEST, "the release manifest")
    listed = [entry["name"] for entry in manifest["services"]]
    problems = []
    if not listed:
        problems.append("the manifest lists no services")
    for entry in manifest["services"]:
        problems.extend(problems_of(folder, entry))
    deployed = sorted(p.parent.name for p in folder.glob(f"*/{release.RECORD}"))
    for name in deployed:
        if name not in listed:
            problems.append(f"{name}: deployed but not listed in the manifest")
    digest = hashlib.sha256()
    for name in sorted(listed):
        record_path = folder / name / release.RECORD
        if record_path.is_file():
            digest.update(f"{name}:{release.read_json(record_path, name)['sha256']}\n".encode())
    summary = {
        "release": manifest["release"],
        "services": sorted(listed),
        "releaseSha256": digest.hexdigest(),
        "validatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return problems, summary


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) != 1:
        print("usage: validate_release.py TASK_ID", file=sys.stderr)
        return 2
    try:
        problems, summary = validate(argv[0])
    except (release.ReleaseError, OSError) as exc:
        print(f"validate_release: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError) as exc:
        print(f"validate_release: a manifest or record is malformed: {exc!r}", file=sys.stderr)
        return 1
    if problems:
        print(f"validate_release: {summary['release']} is NOT valid:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    release.write_json(release.release_dir(argv[0]) / "validated.json", summary)
    count = len(summary["services"])
    print(
        f"{summary['release']}: {count} service(s) valid, release sha256 {summary['releaseSha256']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
