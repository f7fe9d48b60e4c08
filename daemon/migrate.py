"""`embedkeeper migrate`: alembic upgrade head on embedkeeper's own schema.

The first migration gives embeddings.document_id the type of the source's key, read off the
source table, so the discovery anti-join compares like with like and uses the index.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from daemon.config import SourceConfig
from daemon.db import connect, mapped_errors
from daemon.errors import EmbedkeeperError
from daemon.logs import event
from daemon.preflight import HEAD_REVISION, inspect_source, schema_revision

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def migrate(url: str, source: SourceConfig, *, timeout_s: float = 10.0) -> str:
    """Bring the schema to head; returns the revision it is at."""
    if not (ALEMBIC_DIR / "env.py").is_file():
        raise EmbedkeeperError(
            f"migrations not found in {ALEMBIC_DIR}; install embedkeeper from its source tree "
            "(pip install -e .)"
        )
    with connect(url, timeout_s=timeout_s, register=False) as conn:
        with mapped_errors("reading the schema version"):
            revision = schema_revision(conn)
        id_type = inspect_source(conn, source).key_family if revision is None else None
    if revision == HEAD_REVISION:
        event(log, logging.INFO, "schema_current", revision=revision)
        return revision
    _upgrade(url, id_type or "bigint", timeout_s)
    event(log, logging.INFO, "schema_migrated", revision=HEAD_REVISION, previous=revision)
    return HEAD_REVISION


def _upgrade(url: str, id_type: str, timeout_s: float) -> None:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from alembic import command

    def creator() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(url, connect_timeout=max(1, round(timeout_s)))

    engine = create_engine("postgresql+psycopg://", creator=creator, poolclass=None)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["document_id_type"] = id_type
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except Exception as exc:
        if isinstance(exc, EmbedkeeperError):
            raise
        raise EmbedkeeperError(
            f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
            "the role needs CREATE on the database (schema embedkeeper) and pgvector installed"
        ) from exc
    finally:
        engine.dispose()
