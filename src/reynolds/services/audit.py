"""The audit log's use cases: recording an action attempt, reading the log a page at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from reynolds.core.audit import (
    PAGE_DEFAULT,
    cheap_to_describe,
    describe_action,
    encode_cursor,
)
from reynolds.services.ports import Row, Store


def record_attempt(
    store: Store,
    fields: Row,
    action: object,
    argv: Sequence[str] | None = None,
    secret_names: Sequence[str] = (),
) -> None:
    """Append one attempt's audit record: `fields`, and what describe_action says of the
    action. Describing a long argv means masking up to 64 KiB of text, milliseconds of CPU
    that would hold every other request: that is done on the store's writer thread."""
    if cheap_to_describe(action, argv):
        store.add_audit(fields | describe_action(action, argv, secret_names))
    else:
        store.add_audit_later(lambda: fields | describe_action(action, argv, secret_names))


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Records oldest first, and the cursor of the page before them (None: nothing older)."""

    records: list[Row]
    next_cursor: str | None


async def read_audit(
    store: Store,
    *,
    task_id: str | None = None,
    since: float | None = None,
    limit: int = PAGE_DEFAULT,
    before: tuple[float, int] | None = None,
) -> AuditPage:
    """The newest `limit` records matching (before the position of a cursor, decode_cursor's
    `before`), oldest first. Pages walk back in time by (at, seq): no record is on two pages,
    and one recorded while they are read is on none or on a later one."""
    await store.flush()
    rows = await asyncio.to_thread(store.audit, task_id, since, limit + 1, before)
    if len(rows) <= limit:
        return AuditPage(rows, None)
    rows = rows[1:]  # the extra, oldest row only says there is a page before
    return AuditPage(rows, encode_cursor(rows[0]))
