"""The registry of (source, model) pairs: each pair's tables are created by `migrate` from the
config (they depend on it), and this table records what they were made for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from embedkeeper.models.tables import SCHEMA, pairs

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pairs.to_metadata(sa.MetaData(schema=SCHEMA)).create(op.get_bind())


def downgrade() -> None:
    op.drop_table("pairs", schema=SCHEMA)
