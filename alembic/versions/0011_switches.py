"""The history of each source's serving model: `embedkeeper.switches` (source, from_model,
to_model, switched_at, switched_by, missing). The serving view itself (embedkeeper.<source>)
depends on the config's sources, so `migrate` makes it after this revision, as it makes the
pairs' tables; its first row per source is written then.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from embedkeeper.models.schema import SCHEMA
from embedkeeper.models.tables import switches

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    switches.to_metadata(sa.MetaData(schema=SCHEMA)).create(op.get_bind())


def downgrade() -> None:
    op.drop_table("switches", schema=SCHEMA)
