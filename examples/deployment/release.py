"""What the deployment scripts share: where a release lives, its manifest, and safe names.

Task ids and service names come in as plain argv. A task id must be a plain token and a
service must be one of the folders in `services/` (looked up, never joined as given), so no
argument can reach outside the work folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVICES_DIR = HERE / "services"
TEMPLATE_SUFFIX = ".template"
MANIFEST = "manifest.json"
RECORD = "deployed.json"
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class ReleaseError(Exception):
    """A release cannot be set up, deployed to or validated; the message says why."""


def shown(value: str, limit: int = 80) -> str:
    """A value safe to print: quoted, escaped and cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def work_dir() -> Path:
    """Where releases are written: `DEPLOYMENT_WORKDIR`, or `work/` beside this file."""
    configured = os.environ.get("DEPLOYMENT_WORKDIR", "").strip()
    return Path(configured) if configured else HERE / "work"


def release_dir(task_id: str) -> Path:
    """The folder of the release made by task `task_id`."""
    if not _TASK_ID.fullmatch(task_id):
        raise ReleaseError(
            f"task id {shown(task_id)} must be letters, digits, '_', '.' or '-' (at most 128)"
        )
    return work_dir() / f"release-{task_id}"


def services() -> dict[str, Path]:
    """The deployable services: each folder in `services/` with a service.json and a template."""
    found = {}
    for folder in sorted(SERVICES_DIR.iterdir()):
        if _SERVICE.fullmatch(folder.name) and (folder / "service.json").is_file():
            found[folder.name] = folder
    return found


def service_dir(name: str) -> Path:
    """The folder of service `name`, or a `ReleaseError` listing the known services."""
    known = services()
    if name not in known:
        raise ReleaseError(f"unknown service {shown(name)}; known: {', '.join(known)}")
    return known[name]


def template_of(folder: Path) -> Path:
    """The service's single `*.template` file."""
    templates = sorted(folder.glob(f"*{TEMPLATE_SUFFIX}"))
    if len(templates) != 1:
        raise ReleaseError(f"{folder.name} needs exactly one *{TEMPLATE_SUFFIX} file")
    return templates[0]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{what} cannot be read ({path}): {exc}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so a parallel reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
