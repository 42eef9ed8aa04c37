"""What a subtask's end says beyond its status and reason: loop prevention's verdict (detector,
confidence, evidence) when it stopped the subtask, the class of each failed attempt, and each
task's input fingerprint and how it failed (resubmission loops).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(64), nullable=True))
    with op.batch_alter_table("subtasks") as batch:
        batch.add_column(sa.Column("detail", sa.JSON(), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("failure_class", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("outcome")
        batch.drop_column("fingerprint")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("failure_class")
    with op.batch_alter_table("subtasks") as batch:
        batch.drop_column("detail")
