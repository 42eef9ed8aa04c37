"""Credentials for agents: a pool's `secrets` ({ENV_NAME: file name}) read from the secrets
directory when an action of that pool starts, so a rotated file is used at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reynolds.errors import ActionDenied

# Larger than any token or key; a bigger file is not a credential.
MAX_SECRET_BYTES = 64 * 1024


class SecretFiles:
    """Reads `NAME` files of one directory (`settings.secrets_dir`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, wanted: Mapping[str, str]) -> dict[str, str]:
        """{ENV_NAME: the file's text, stripped}; ActionDenied (reason `not_found`) naming
        the variable and the file when one is missing, empty or too large."""
        out: dict[str, str] = {}
        for variable, name in wanted.items():
            path = self.directory / name
            try:
                with path.open("rb") as fh:
                    data = fh.read(MAX_SECRET_BYTES + 1)
            except OSError:
                raise ActionDenied(
                    f"secret {variable}: file {path} cannot be read", reason="not_found"
                ) from None
            value = data.decode("utf-8", "replace").strip()
            if not value or len(data) > MAX_SECRET_BYTES or "\0" in value:
                raise ActionDenied(
                    f"secret {variable}: file {path} is empty, larger than 64 KiB or not text",
                    reason="not_found",
                )
            out[variable] = value
        return out
