"""Sources have names: the pass's own tables (runs, inflight, sync_state, deferred_indexes) say
which (source, model) pair each row belongs to, so two sources that share a model name keep
their watermarks, batches in flight and history apart.

Rows from before carry '' until `embedkeeper migrate` files them under the config's source
(store/upgrade/carry.py). 0001 builds these tables from models/tables.py, which already declares the
columns on a new database: hence IF NOT EXISTS throughout.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("runs", "inflight", "sync_state", "deferred_indexes")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE embedkeeper.{table} ADD COLUMN IF NOT EXISTS source text NOT NULL"
            " DEFAULT ''"
        )
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (
                SELECT 1 FROM pg_index i JOIN pg_attribute a
                  ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = 'embedkeeper.sync_state'::regclass AND i.indisprimary
                  AND a.attname = 'source'
            ) THEN
                ALTER TABLE embedkeeper.sync_state DROP CONSTRAINT sync_state_pkey;
                ALTER TABLE embedkeeper.sync_state ADD CONSTRAINT sync_state_pkey
                    PRIMARY KEY (source, model);
            END IF;
        END $$
        """
    )
    op.execute("DROP INDEX IF EXISTS embedkeeper.runs_model_started_idx")
    op.execute(
        "CREATE INDEX IF NOT EXISTS runs_pair_started_idx"
        " ON embedkeeper.runs (source, model, started_at)"
    )
    op.execute("DROP INDEX IF EXISTS embedkeeper.inflight_model_idx")
    op.execute(
        "CREATE INDEX IF NOT EXISTS inflight_pair_idx ON embedkeeper.inflight (source, model)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS embedkeeper.inflight_pair_idx")
    op.execute("CREATE INDEX IF NOT EXISTS inflight_model_idx ON embedkeeper.inflight (model)")
    op.execute("DROP INDEX IF EXISTS embedkeeper.runs_pair_started_idx")
    op.execute(
        "CREATE INDEX IF NOT EXISTS runs_model_started_idx ON embedkeeper.runs (model, started_at)"
    )
    op.execute("ALTER TABLE embedkeeper.sync_state DROP CONSTRAINT sync_state_pkey")
    op.execute(
        "ALTER TABLE embedkeeper.sync_state ADD CONSTRAINT sync_state_pkey PRIMARY KEY (model)"
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE embedkeeper.{table} DROP COLUMN IF EXISTS source")
