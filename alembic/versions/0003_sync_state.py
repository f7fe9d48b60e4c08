"""Per-model sync state, so a pass's cost follows the change instead of the table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("source_signature", sa.Text, nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("table_fingerprint", sa.Text, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="embedkeeper",
    )


def downgrade() -> None:
    op.drop_table("sync_state", schema="embedkeeper")
