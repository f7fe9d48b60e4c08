"""A pair records its chunking settings (the chunker's fingerprint): every writer checks its own
against them before it writes, so two processes of different settings stop instead of
re-embedding each other's documents in turn; `migrate` adopts the config's settings.

A pair from before has none (NULL) until `migrate` or its first write records them. 0007 builds
the table from models/tables.py, which already declares the column on a new database: hence
IF NOT EXISTS.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE embedkeeper.pairs ADD COLUMN IF NOT EXISTS chunking text")


def downgrade() -> None:
    op.execute("ALTER TABLE embedkeeper.pairs DROP COLUMN IF EXISTS chunking")
