"""The SQLAlchemy tables that alembic migrates: vectors, the model registry, failures and runs.

`embeddings.document_id` has the type of the user's key (bigint, text or uuid) so the discovery
anti-join probes an index without a cast. The type is chosen when the schema is first created
(`embedkeeper migrate` reads it off the source table); these models declare the bigint form.
"""

from __future__ import annotations

from typing import Any

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.types import TypeEngine

from .schema import SCHEMA

# Source key type family -> the document_id column type.
DOCUMENT_ID_TYPES: dict[str, TypeEngine[Any]] = {
    "bigint": BigInteger(),
    "text": Text(),
    "uuid": UUID(as_uuid=True),
}

FAILURE_STATUSES = ("retry", "review", "ignored")

metadata = MetaData(schema=SCHEMA)


def now_column(name: str, nullable: bool = False) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable, server_default=func.now())


def source_column() -> Column[Any]:
    """The (source, model) pair a row of the pass's own tables belongs to: its source's name
    ([source] name). Rows from before sources had names (v0.1) carry '' until `migrate` files
    them under the config's source."""
    return Column("source", Text, nullable=False, server_default=text("''"))


def embeddings_table(meta: MetaData, document_id_type: TypeEngine[Any]) -> Table:
    return Table(
        "embeddings",
        meta,
        Column("model", Text, nullable=False),
        Column("document_id", document_id_type, nullable=False),
        Column("embedding", VECTOR(), nullable=False),
        Column(
            "content_hash", LargeBinary, nullable=False
        ),  # md5 of the text, as PostgreSQL computes it
        Column("source_updated_at", DateTime(timezone=True), nullable=True),
        Column("token_count", Integer, nullable=False),
        Column("truncated", Boolean, nullable=False),
        now_column("embedded_at"),
        # Unique (document_id, model); model first so per-model scans and prunes use it.
        PrimaryKeyConstraint("model", "document_id", name="embeddings_pkey"),
    )


def failures_table(meta: MetaData, document_id_type: TypeEngine[Any]) -> Table:
    return Table(
        "failures",
        meta,
        Column("model", Text, nullable=False),
        Column("document_id", document_id_type, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("error_class", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("content_hash", LargeBinary, nullable=True),  # the text that failed
        now_column("first_seen"),
        now_column("last_seen"),
        Column("next_retry_at", DateTime(timezone=True), nullable=True),
        Column("status", Text, nullable=False),
        PrimaryKeyConstraint("model", "document_id", name="failures_pkey"),
        CheckConstraint("status IN ('retry', 'review', 'ignored')", name="failures_status_check"),
    )


embeddings = embeddings_table(metadata, DOCUMENT_ID_TYPES["bigint"])
failures = failures_table(metadata, DOCUMENT_ID_TYPES["bigint"])

registered_models = Table(
    "models",
    metadata,
    Column("name", Text, primary_key=True),
    Column("dimensions", Integer, nullable=False),
    Column("backend", Text, nullable=False),
    Column("model_ref", Text, nullable=False),
    now_column("registered_at"),
)

# A batch being embedded: written before the model is called, deleted with the batch's write.
# A row whose session is gone means the process died mid-batch (crash, kill -9, OOM kill): the next
# pass charges its documents one attempt each and embeds them one at a time, so a document that
# kills the process ends in review instead of in a crash loop.
inflight = Table(
    "inflight",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    source_column(),
    Column("model", Text, nullable=False),
    Column("document_ids", ARRAY(Text), nullable=False),
    Column("backend_pid", Integer, nullable=False),
    Column("backend_start", DateTime(timezone=True), nullable=False),
    now_column("started_at"),
    Index("inflight_pair_idx", "source", "model"),
)

# What the last complete pass of a model saw, for the next pass to start from: the newest
# `updated_at` it covered (discovery then reads only rows changed since, by index), and the source
# table's modification counters when it last pruned (unchanged counters: nothing was deleted).
# `source_signature` ties both to the [source] settings they were taken under.
sync_state = Table(
    "sync_state",
    metadata,
    source_column(),
    Column("model", Text, nullable=False),
    Column("source_signature", Text, nullable=False),
    Column("watermark", DateTime(timezone=True), nullable=True),
    Column("table_fingerprint", Text, nullable=True),
    Column("swept_at", DateTime(timezone=True), nullable=True),  # the last content-hash sweep
    now_column("updated_at"),
    # With the delete log (store/pass_io/delete_log.py): the last log entry this model has pruned,
    # the
    # source's deleted-row counter at its last full prune, and the entries pruned since then.
    Column("delete_log_position", BigInteger, nullable=True),
    Column("deletes_baseline", BigInteger, nullable=True),
    Column("deletes_logged", BigInteger, nullable=True),
    PrimaryKeyConstraint("source", "model", name="sync_state_pkey"),
)

# Keys of deleted documents, written by the opt-in trigger `embedkeeper deletes track` puts on
# the source table (function embedkeeper.log_deleted_documents, created by migration 0005).
deleted_documents = Table(
    "deleted_documents",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source_table", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    now_column("deleted_at"),
    Index("deleted_documents_source_idx", "source_table", "id"),
)

# A model's vector index that `backfill --defer-index` dropped and has not rebuilt yet: its
# pg_get_indexdef, written in the transaction that drops it and deleted in the one that rebuilds
# it, so at every commit either the index or this row exists (store/index/deferred_index.py).
deferred_indexes = Table(
    "deferred_indexes",
    metadata,
    Column("index_name", Text, primary_key=True),
    source_column(),
    Column("model", Text, nullable=False),
    Column("definition", Text, nullable=False),
    now_column("dropped_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    source_column(),
    Column("model", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'running'")),
    now_column("started_at"),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("docs_ok", Integer, nullable=False, server_default=text("0")),
    Column("docs_failed", Integer, nullable=False, server_default=text("0")),
    Column("docs_skipped", Integer, nullable=False, server_default=text("0")),
    Column("docs_deleted", Integer, nullable=False, server_default=text("0")),
    Column("tokens", BigInteger, nullable=False, server_default=text("0")),  # sent to the model
    # What the pass sent and what it kept (alembic 0010): chunks embedded, and the chunks (and
    # their tokens) whose stored vector the document already had for the same passage.
    Column("chunks_embedded", BigInteger, nullable=False, server_default=text("0")),
    Column("chunks_reused", BigInteger, nullable=False, server_default=text("0")),
    Column("tokens_reused", BigInteger, nullable=False, server_default=text("0")),
    Column("docs_per_s", Float, nullable=True),
    Column("tokens_per_s", Float, nullable=True),
    Column("host", Text, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("backend_pid", Integer, nullable=True),  # the pass's session; gone = run abandoned
    Column("error", Text, nullable=True),
    Index("runs_pair_started_idx", "source", "model", "started_at"),
    Index("runs_running_idx", "id", postgresql_where=text("status = 'running'")),
    # The daemon prunes runs older than `[runs] keep` by this index: a range at the old end,
    # never a scan of the whole history (store/state/runs.py, prune_runs).
    Index("runs_finished_idx", "finished_at"),
)

# The (source, model) pairs whose tables (models/pairs.py) `migrate` has created from the config:
# which table each source name stood for, its key type, the vectors' size and storage, and the
# chunking settings. A config
# that later points a source name at another table, or a model at another size, is refused
# against this record instead of mixing two tables' documents in one pair's tables.
pairs = Table(
    "pairs",
    metadata,
    Column("source", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("base_name", Text, nullable=False, unique=True),  # every table of the pair starts so
    Column("source_table", Text, nullable=False),  # schema.table as the config names it
    Column("key_type", Text, nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("storage", Text, nullable=False),
    # The chunker's fingerprint its records are made with: a writer of other settings stops
    # before it writes (store/pair/tables.py, fence_chunking); `migrate` adopts the config's.
    # NULL: a pair from before alembic 0009 (or made without settings), until the first write.
    Column("chunking", Text, nullable=True),
    # The settings its vectors are made with, readable (chunking/for_model.py vector_settings):
    # a config that changes them under the same model name is refused at start, naming old and
    # new (store/pair/vector_settings.py); `migrate --reembed` adopts new ones. NULL: a pair from
    # before alembic 0012, until `migrate` fills them from the config.
    Column("vector_settings", JSONB, nullable=True),
    now_column("created_at"),
    PrimaryKeyConstraint("source", "model", name="pairs_pkey"),
    CheckConstraint("storage IN ('vector', 'halfvec')", name="pairs_storage_check"),
    CheckConstraint("key_type IN ('bigint', 'text', 'uuid')", name="pairs_key_type_check"),
)

# Each change of a source's serving model (the view embedkeeper.<source> that applications
# search, store/serving/): which model it left (NULL: the first, set by `migrate`) and which it
# took, when, and by which database role. The newest row of a source names the model that serves
# it now; it is written in the transaction that replaces the view, so the two never disagree.
switches = Table(
    "switches",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("from_model", Text, nullable=True),
    Column("to_model", Text, nullable=False),
    now_column("switched_at"),
    Column("switched_by", Text, nullable=False, server_default=text("current_user")),
    # `switch --force` onto a pair that was not complete: how many documents it lacked then
    Column("missing", BigInteger, nullable=False, server_default=text("0")),
    Index("switches_source_idx", "source", "id"),
)
