"""embedkeeper's schema: embeddings, model registry, failures, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op
from embedkeeper.models.tables import (
    DOCUMENT_ID_TYPES,
    SCHEMA,
    embeddings_table,
    failures_table,
    registered_models,
    runs,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    id_type = DOCUMENT_ID_TYPES[context.config.attributes.get("document_id_type", "bigint")]
    meta = sa.MetaData(schema=SCHEMA)
    bind = op.get_bind()
    for table in (
        embeddings_table(meta, id_type),
        failures_table(meta, id_type),
        registered_models.to_metadata(meta),
        runs.to_metadata(meta),
    ):
        table.create(bind)


def downgrade() -> None:
    for name in ("runs", "failures", "models", "embeddings"):
        op.drop_table(name, schema=SCHEMA)
