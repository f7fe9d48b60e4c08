"""An index on runs' finish time, so that the daemon prunes the history older than `[runs] keep`
by a range at the old end of the index instead of a scan of every run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 builds runs from models/tables.py, which declares the index too: hence IF NOT EXISTS.
    op.create_index(
        "runs_finished_idx", "runs", ["finished_at"], schema="embedkeeper", if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("runs_finished_idx", table_name="runs", schema="embedkeeper", if_exists=True)
