"""The tables of one (source, model) pair: its documents' records, their chunks, its failures.

One set per pair, not one shared table: the vector column is typed (`vector(N)` or
`halfvec(N)`), so the HNSW index is plain and a search needs no cast; the key has the source's
own type, so sources with bigint, text and uuid keys live side by side; dropping a model is a
DROP TABLE, and vacuum and index builds touch one model only. They depend on the config (which
sources, which models, how many dimensions), so `embedkeeper migrate` creates them from these
definitions rather than an alembic revision; `embedkeeper.pairs` (tables.py) records each one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
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

from .tables import DOCUMENT_ID_TYPES, FAILURE_STATUSES, SCHEMA

MAX_NAME = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1)
SUFFIXES = ("_documents", "_chunks", "_failures", "_hnsw", "_full_text")
Storage = Literal["vector", "halfvec"]


PLAIN_NAME = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")


def pair_base_name(source: str, model: str) -> str:
    """`<source>__<model>` when both are plain lower-case names (single underscores inside
    only, so the double underscore splits them one way) and it fits with the longest suffix;
    otherwise the plain part, shortened, and a hash of both names, so that two pairs never share
    a table."""
    joined = f"{source}__{model}"
    longest = max(len(s) for s in SUFFIXES)
    plain_parts = PLAIN_NAME.fullmatch(source) and PLAIN_NAME.fullmatch(model)
    if plain_parts and len(joined) + longest <= MAX_NAME:
        return joined
    plain = re.sub(r"[^a-z0-9_]", "", joined.lower())
    digest = hashlib.sha256(f"{source}\0{model}".encode()).hexdigest()[:10]
    return f"{plain[: MAX_NAME - longest - len(digest) - 1]}_{digest}"


def pair_tables(
    base: str, key_type: str, dimensions: int, storage: Storage = "vector"
) -> tuple[Table, Table, Table]:
    """(documents, chunks, failures) of the pair whose tables start with `base`."""
    meta = MetaData(schema=SCHEMA)
    key: Any = DOCUMENT_ID_TYPES[key_type]
    vector = HALFVEC(dimensions) if storage == "halfvec" else VECTOR(dimensions)
    now = func.now()
    documents = Table(
        f"{base}_documents",
        meta,
        # A document is embedded when this row carries its current content hash and chunking:
        # the row and every chunk are written in one transaction.
        Column("document_id", key, primary_key=True),
        Column(
            "content_hash", LargeBinary, nullable=False
        ),  # md5 of the text, as PostgreSQL has it
        Column("chunking", Text, nullable=False),  # the chunker's fingerprint
        Column("chunk_count", Integer, nullable=False),
        Column("token_count", Integer, nullable=False),
        Column("truncated", Boolean, nullable=False),
        Column("source_updated_at", DateTime(timezone=True), nullable=True),
        Column("embedded_at", DateTime(timezone=True), nullable=False, server_default=now),
        # A pass's start asks whether any record is of other chunking settings (two index
        # probes, see SourceSql.other_chunking_exists), so a change of settings re-walks all.
        Index(f"{base}_chunking", "chunking"),
    )
    chunks = Table(
        f"{base}_chunks",
        meta,
        Column("document_id", key, nullable=False),
        Column("chunk", Integer, nullable=False),
        Column("char_start", Integer, nullable=False),  # the passage is text[char_start:char_end]
        Column("char_end", Integer, nullable=False),
        Column("passage", Text, nullable=False),
        Column("embedding", vector, nullable=False),
        PrimaryKeyConstraint("document_id", "chunk", name=f"{base}_chunks_pkey"),
        # A document's chunks go with its record: every prune deletes records only.
        ForeignKeyConstraint(
            ["document_id"],
            [documents.c.document_id],
            name=f"{base}_chunks_document_fkey",
            ondelete="CASCADE",
        ),
    )
    failures = Table(
        f"{base}_failures",
        meta,
        Column("document_id", key, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("error_class", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("content_hash", LargeBinary, nullable=True),  # the text that failed
        Column("first_seen", DateTime(timezone=True), nullable=False, server_default=now),
        Column("last_seen", DateTime(timezone=True), nullable=False, server_default=now),
        Column("next_retry_at", DateTime(timezone=True), nullable=True),
        Column("status", Text, nullable=False),
        PrimaryKeyConstraint("document_id", name=f"{base}_failures_pkey"),
        CheckConstraint(
            text(f"status IN {FAILURE_STATUSES!r}"), name=f"{base}_failures_status_check"
        ),
    )
    return documents, chunks, failures
