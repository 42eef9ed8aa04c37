"""Subtask ids as long as a task can make them: a step name (100), ':' and a component (500).

At 200 characters PostgreSQL refused the longer ones (and two ids alike in their first 200
made the writer give up the batch they were in); SQLite never enforced the length.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = [
    ("subtasks", "id", False),
    ("attempts", "subtask_id", False),
    ("events", "subtask_id", True),
    ("audit", "subtask_id", True),
    ("orchestration_decisions", "subtask_id", False),
]


def upgrade() -> None:
    for table, column, nullable in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                type_=sa.String(1000),
                existing_type=sa.String(200),
                existing_nullable=nullable,
            )


def downgrade() -> None:
    for table, column, nullable in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                type_=sa.String(200),
                existing_type=sa.String(1000),
                existing_nullable=nullable,
            )
