"""A log of deleted documents, written by an opt-in trigger on the source table
(`embedkeeper deletes track`), so that a pass prunes the deleted keys instead of reading every key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A statement-level trigger with a transition table: one INSERT ... SELECT per DELETE statement,
# however many rows it deletes. TG_ARGV: the source's name as embedkeeper knows it, and its key.
# SECURITY DEFINER: the application's roles that delete rows need no rights on schema embedkeeper
# (without it, their DELETEs would fail once the trigger is on); a fixed search_path with it.
LOG_FUNCTION = """
CREATE FUNCTION embedkeeper.log_deleted_documents() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO embedkeeper.deleted_documents (source_table, document_id)'
        ' SELECT %L, (%I)::text FROM embedkeeper_gone',
        TG_ARGV[0], TG_ARGV[1]);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "deleted_documents",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("source_table", sa.Text, nullable=False),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column(
            "deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="embedkeeper",
    )
    op.create_index(
        "deleted_documents_source_idx",
        "deleted_documents",
        ["source_table", "id"],
        schema="embedkeeper",
    )
    op.execute(LOG_FUNCTION)
    for column in ("delete_log_position", "deletes_baseline", "deletes_logged"):
        op.add_column(
            "sync_state", sa.Column(column, sa.BigInteger, nullable=True), schema="embedkeeper"
        )


def downgrade() -> None:
    for column in ("delete_log_position", "deletes_baseline", "deletes_logged"):
        op.drop_column("sync_state", column, schema="embedkeeper")
    op.execute("DROP FUNCTION embedkeeper.log_deleted_documents() CASCADE")
    op.drop_table("deleted_documents", schema="embedkeeper")
