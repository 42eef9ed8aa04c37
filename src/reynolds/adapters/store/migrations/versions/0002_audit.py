"""The audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token_name", sa.String(100), nullable=True),
        sa.Column("tool", sa.String(64), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("pool", sa.String(100), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("subtask_id", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("argv", sa.JSON(), nullable=True),
        sa.Column("cwd", sa.Text(), nullable=True),
        sa.Column("env_names", sa.JSON(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("output_bytes", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_task_at", "audit", ["task_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_task_at", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
