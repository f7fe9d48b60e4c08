"""A run records what its pass reused beside what it embedded: `chunks_embedded` (chunks sent to
the model), `chunks_reused` (chunks whose stored vector was kept, never sent) and `tokens_reused`
(their tokens); `tokens` stays the tokens sent. Rows from before read 0.

ADD COLUMN with a constant DEFAULT changes only the catalog on PostgreSQL 11 and later: no row of
the history is rewritten, and the table's lock is held for an instant. 0001 builds runs from
models/tables.py, which already declares the columns on a new database: hence IF NOT EXISTS.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("chunks_embedded", "chunks_reused", "tokens_reused")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE embedkeeper.runs "
        + ", ".join(f"ADD COLUMN IF NOT EXISTS {c} bigint NOT NULL DEFAULT 0" for c in COLUMNS)
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE embedkeeper.runs " + ", ".join(f"DROP COLUMN IF EXISTS {c}" for c in COLUMNS)
    )
