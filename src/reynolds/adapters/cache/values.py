"""What both caches keep: a value's JSON, with a positive time to live."""

from __future__ import annotations

import json
from typing import Any


def encode(value: Any, ttl_s: float) -> str:
    """`value` as JSON; a value that is not JSON, or no time to live, is a bug, not a miss."""
    if not ttl_s > 0:
        raise ValueError(f"every cache entry needs a positive time to live, not {ttl_s!r}")
    return json.dumps(value, separators=(",", ":"))
