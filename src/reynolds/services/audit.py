"""The audit log's use cases: recording an action attempt."""

from __future__ import annotations

from collections.abc import Sequence

from reynolds.core.audit import cheap_to_describe, describe_action
from reynolds.services.ports import Row, Store


def record_attempt(
    store: Store, fields: Row, action: object, argv: Sequence[str] | None = None
) -> None:
    """Append one attempt's audit record: `fields`, and what describe_action says of the
    action. Describing a long argv means masking up to 64 KiB of text, milliseconds of CPU
    that would hold every other request: that is done on the store's writer thread."""
    if cheap_to_describe(action, argv):
        store.add_audit(fields | describe_action(action, argv))
    else:
        store.add_audit_later(lambda: fields | describe_action(action, argv))
