"""A pair records the settings its vectors were made with, readable (backend, model, prefix,
normalize, max_tokens, dimensions asked, options): a config that changes them under the same
model name is refused at start with the old and new values, instead of being adopted silently
and mixing two vector spaces in one pair until every record is embedded again.

A pair from before has none (NULL) until `migrate` fills them from the config, without
complaint. 0007 builds the table from models/tables.py, which already declares the column on a
new database: hence IF NOT EXISTS.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE embedkeeper.pairs ADD COLUMN IF NOT EXISTS vector_settings jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE embedkeeper.pairs DROP COLUMN IF EXISTS vector_settings")
