"""Vector indexes dropped for a large backfill, recorded so they are rebuilt even if it dies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deferred_indexes",
        sa.Column("index_name", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column(
            "dropped_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="embedkeeper",
    )


def downgrade() -> None:
    op.drop_table("deferred_indexes", schema="embedkeeper")
