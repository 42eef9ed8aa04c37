"""Why a task ended as it did, beyond its status: the budget or deadline that stopped it
(`budget_exceeded`, `deadline_exceeded`); and the task whose action submitted it, with its
depth below a task submitted by hand (runaway orchestration).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("depth", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("depth")
        batch.drop_column("parent_id")
        batch.drop_column("reason")
