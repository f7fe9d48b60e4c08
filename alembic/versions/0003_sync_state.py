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
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="embedkeeper",
    )
    # Each run start looks for runs still 'running': without this, a scan of every run ever.
    # (0001 builds runs from models/tables.py, which declares it too: hence IF NOT EXISTS.)
    op.create_index(
        "runs_running_idx",
        "runs",
        ["id"],
        schema="embedkeeper",
        postgresql_where=sa.text("status = 'running'"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("runs_running_idx", table_name="runs", schema="embedkeeper", if_exists=True)
    op.drop_table("sync_state", schema="embedkeeper")
