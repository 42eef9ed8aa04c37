"""Create the release folder and its manifest.

    python3 setup_release.py TASK_ID SERVICE [SERVICE...]

Writes `<work>/release-TASK_ID/manifest.json` listing the services to deploy, each with the
checksum of its template as it is now. A folder left by an earlier attempt is replaced.
Exit status: 0 done, 1 failed, 2 usage.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime

import release


def setup(task_id: str, names: list[str]) -> dict[str, object]:
    """Create the release folder for `names`; returns the manifest written."""
    folder = release.release_dir(task_id)
    if len(set(names)) != len(names):
        raise release.ReleaseError("a service is listed twice")
    entries = []
    for name in names:
        template = release.template_of(release.service_dir(name))
        entries.append(
            {
                "name": name,
                "template": str(template.relative_to(release.HERE)),
                "templateSha256": release.sha256_of(template),
            }
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest = {
        "release": folder.name,
        "taskId": task_id,
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "services": entries,
    }
    release.write_json(folder / release.MANIFEST, manifest)
    return manifest


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) < 2:
        print("usage: setup_release.py TASK_ID SERVICE [SERVICE...]", file=sys.stderr)
        return 2
    try:
        manifest = setup(argv[0], argv[1:])
    except (release.ReleaseError, OSError) as exc:
        print(f"setup_release: {exc}", file=sys.stderr)
        return 1
    names = argv[1:]
    print(f"{manifest['release']}: manifest lists {len(names)} service(s): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
