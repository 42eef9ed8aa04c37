"""Render one service's configuration into the release and record its checksum.

    python3 deploy_service.py TASK_ID SERVICE

Fills the service's `*.template` (`${name}` placeholders) with its `service.json` values plus
`service`, `release` and `task_id`, checks that JSON and TOML output still parses, writes it to
`<work>/release-TASK_ID/SERVICE/` and records the SHA-256 in `deployed.json` beside it.
Exit status: 0 done, 1 failed, 2 usage.
"""

from __future__ import annotations

import json
import string
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import release


def render(template: Path, values: dict[str, Any]) -> str:
    """The template filled in; every placeholder must have a value."""
    try:
        return string.Template(template.read_text(encoding="utf-8")).substitute(values)
    except KeyError as exc:
        raise release.ReleaseError(
            f"{template.name} uses ${{{exc.args[0]}}}, which service.json does not set"
        ) from None
    except ValueError as exc:
        raise release.ReleaseError(f"{template.name} has a malformed placeholder: {exc}") from None


def check_syntax(name: str, text: str) -> None:
    """Output in a format Python can parse (JSON, TOML) must still parse once rendered."""
    try:
        if name.endswith(".json"):
            json.loads(text)
        elif name.endswith(".toml"):
            tomllib.loads(text)
    except ValueError as exc:
        raise release.ReleaseError(f"the rendered {name} does not parse: {exc}") from None


def deploy(task_id: str, name: str) -> dict[str, Any]:
    """Render service `name` into the release of `task_id`; returns the record written."""
    folder = release.release_dir(task_id)
    manifest = release.read_json(folder / release.MANIFEST, "the release manifest")
    if name not in [entry["name"] for entry in manifest["services"]]:
        raise release.ReleaseError(
            f"{manifest['release']} does not list service {release.shown(name)}"
        )
    source = release.service_dir(name)
    values = release.read_json(source / "service.json", f"{name}/service.json")
    if not isinstance(values, dict):
        raise release.ReleaseError(f"{name}/service.json must hold an object")
    template = release.template_of(source)
    values |= {"service": name, "release": manifest["release"], "task_id": task_id}
    config_name = template.name.removesuffix(release.TEMPLATE_SUFFIX)
    text = render(template, values)
    check_syntax(config_name, text)
    target = folder / name / config_name
    release.write_atomically(target, text)
    record = {
        "service": name,
        "config": f"{name}/{config_name}",
        "bytes": len(text.encode("utf-8")),
        "sha256": release.sha256_of(target),
        "templateSha256": release.sha256_of(template),
        "renderedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    release.write_json(folder / name / release.RECORD, record)
    return record


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) != 2:
        print("usage: deploy_service.py TASK_ID SERVICE", file=sys.stderr)
        return 2
    try:
        record = deploy(argv[0], argv[1])
    except (release.ReleaseError, OSError) as exc:
        print(f"deploy_service: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError) as exc:
        print(f"deploy_service: the release manifest is malformed: {exc!r}", file=sys.stderr)
        return 1
    size = f"{record['bytes']} bytes"
    print(f"{record['service']}: {record['config']} ({size}), sha256 {record['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
