"""The server that wrote each event, on a store several servers share: `GET /mcp/events` on
any of them follows the events the others commit.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("server", sa.String(64), nullable=True))
    op.create_index("ix_events_server_seq", "events", ["server", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_server_seq", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("server")
