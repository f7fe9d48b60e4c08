"""A pair's chunks no longer reference its records by a foreign key: every path that deletes a
record deletes its chunks in the same transaction (store/pass_io/prune.py delete_gone, the
writer's replace of a record), so the key checked nothing the code does not keep, and its check
was a per-row trigger on the chunks' COPY that cost more than the row (BENCHMARKS.md, "What an
edit costs": the null-backend backfill beside v0.1).

Every pair made before has the constraint; it is found in the catalog (a foreign key of a
`_chunks` table of the embedkeeper schema), so a pair whose names were shortened and hashed is
found too. Dropping it touches the catalog only: no row is read or rewritten. The downgrade
deletes the chunks no record holds (none, if only embedkeeper wrote them) and adds it back,
named as models/pairs.py named it (`<base>_chunks_fkey`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DO $$ DECLARE c record; BEGIN
            FOR c IN
                SELECT t.relname AS tab, k.conname AS name
                FROM pg_constraint AS k
                JOIN pg_class AS t ON t.oid = k.conrelid
                JOIN pg_namespace AS n ON n.oid = t.relnamespace
                WHERE k.contype = 'f' AND n.nspname = 'embedkeeper' AND t.relname LIKE '%\\_chunks'
            LOOP
                EXECUTE format('ALTER TABLE embedkeeper.%I DROP CONSTRAINT %I', c.tab, c.name);
            END LOOP;
        END $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$ DECLARE c record; BEGIN
            FOR c IN
                SELECT left(t.relname, -length('_chunks')) AS base
                FROM pg_class AS t JOIN pg_namespace AS n ON n.oid = t.relnamespace
                WHERE n.nspname = 'embedkeeper' AND t.relkind = 'r'
                  AND t.relname LIKE '%\\_chunks'
                  AND to_regclass(format('embedkeeper.%I',
                                         left(t.relname, -length('_chunks')) || '_documents'))
                      IS NOT NULL
            LOOP
                EXECUTE format(
                    'DELETE FROM embedkeeper.%I AS c WHERE NOT EXISTS'
                    ' (SELECT 1 FROM embedkeeper.%I AS d WHERE d.document_id = c.document_id)',
                    c.base || '_chunks', c.base || '_documents');
                EXECUTE format(
                    'ALTER TABLE embedkeeper.%I ADD CONSTRAINT %I FOREIGN KEY (document_id)'
                    ' REFERENCES embedkeeper.%I (document_id) ON DELETE CASCADE',
                    c.base || '_chunks', c.base || '_chunks_fkey', c.base || '_documents');
            END LOOP;
        END $$
        """
    )
