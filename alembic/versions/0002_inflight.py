"""In-flight batches, so a process that dies mid-batch charges its documents an attempt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inflight",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("document_ids", ARRAY(sa.Text), nullable=False),
        sa.Column("backend_pid", sa.Integer, nullable=False),
        sa.Column("backend_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="embedkeeper",
    )
    op.create_index("inflight_model_idx", "inflight", ["model"], schema="embedkeeper")


def downgrade() -> None:
    op.drop_table("inflight", schema="embedkeeper")
