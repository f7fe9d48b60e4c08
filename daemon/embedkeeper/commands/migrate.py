"""`embedkeeper migrate`: alembic upgrade head on embedkeeper's own schema.

The first migration gives embeddings.document_id the type of the source's key, read off the
source table, so the discovery anti-join compares like with like and uses the index.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import psycopg

from embedkeeper.config import Config, SourceConfig
from embedkeeper.errors import EmbedkeeperError
from embedkeeper.logs import event, mask_url
from embedkeeper.store.db import connect, database_url, mapped_errors
from embedkeeper.store.pair.full_text import set_full_text
from embedkeeper.store.pair.tables import adopt_chunking, forget_chunking
from embedkeeper.store.pair.vector_settings import adopt_vector_settings, changes, settings_of
from embedkeeper.store.pair.view import replace_view
from embedkeeper.store.serving.switches import settle_serving
from embedkeeper.store.source.preflight import HEAD_REVISION, inspect_source, schema_revision
from embedkeeper.store.upgrade.carry import carry_v01

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def migrations_dir() -> Path:
    """The alembic scripts: inside the package in an installed wheel (embedkeeper/migrations),
    at alembic/ beside daemon/ in a source checkout (an editable install)."""
    for candidate in (PACKAGE_DIR / "migrations", PACKAGE_DIR.parents[1] / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise EmbedkeeperError(
        f"migrations not found in {PACKAGE_DIR / 'migrations'}: the package is incomplete; "
        "reinstall embedkeeper from its wheel"
    )


def migrate(url: str, source: SourceConfig, *, timeout_s: float = 10.0) -> str:
    """Bring the schema to head; returns the revision it is at."""
    scripts = migrations_dir()
    with connect(url, timeout_s=timeout_s, register=False) as conn:
        with mapped_errors("reading the schema version"):
            revision = schema_revision(conn)
        id_type = inspect_source(conn, source).key_family if revision is None else None
    if revision == HEAD_REVISION:
        event(log, logging.INFO, "schema_current", revision=revision)
        return revision
    _upgrade(url, scripts, id_type or "bigint", timeout_s)
    with (
        connect(url, timeout_s=timeout_s, register=False) as conn,
        mapped_errors("reading the schema version"),
    ):
        reached = schema_revision(conn)
    if reached != HEAD_REVISION:
        raise EmbedkeeperError(
            f"migration ended at revision {reached}, not {HEAD_REVISION}: the migration scripts in "
            f"{scripts} do not match this embedkeeper; reinstall it"
        )
    event(log, logging.INFO, "schema_migrated", revision=reached, previous=revision)
    return reached


def _upgrade(url: str, scripts: Path, id_type: str, timeout_s: float) -> None:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from alembic import command

    def creator() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(url, connect_timeout=max(1, round(timeout_s)))

    engine = create_engine("postgresql+psycopg://", creator=creator, poolclass=None)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(scripts))
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


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    url = database_url(config)
    revision = migrate(url, config.source, timeout_s=config.connect_timeout_s)
    print(f"embedkeeper schema at revision {revision} in {mask_url(url)}")
    # A v0.1 database's shared tables, moved into the config's pairs (store/upgrade/carry.py);
    # then every pair's tables and view, made where nothing was carried.
    with connect(url, timeout_s=config.connect_timeout_s) as conn:
        report = carry_v01(conn, config)
    for line in report.lines():
        print(line)
    reembed = frozenset((source, model) for source, model in getattr(args, "reembed", None) or ())
    for source, model in sorted(reembed):
        config.chosen_pairs(source, model)  # an unknown source or model, or a pair not embedded
    make_pairs(config, reembed=reembed)
    return 0


def make_pairs(config: Config, *, reembed: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Each (source, model) pair's tables (a model whose dimensions the config does not state
    is loaded to learn them), its full-text column as the source's `full_text` says, its
    search view, replaced so it follows the config's `where`, its vector settings and its
    chunking settings. The config's chunking is adopted here, the operator's act of changing
    it (every writer of other settings is then refused, store/pair/tables.py fence_chunking);
    its vector settings only for the pairs `reembed` names (store/pair/vector_settings.py),
    else filled where none are recorded, and refused where they differ (by open_app)."""
    from embedkeeper.app import open_app

    app = open_app(config, reembedding=reembed)
    try:
        with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
            for pair in app.pairs.values():
                source, model, names = pair.source, pair.model, pair.names
                app.make_tables(conn, pair)
                # Said when it changed; a pair made just now has it already.
                full_text = set_full_text(conn, names, source.full_text) or (
                    source.full_text and f"full text ({source.full_text})"
                )
                replace_view(conn, pair.statements)
                chunking = pair.chunking
                replaced = None
                with conn.transaction():
                    vectors_were = adopt_vector_settings(
                        conn,
                        names,
                        settings_of(model),
                        reembed=(source.source_name, model.name) in reembed,
                    )
                    if chunking is not None:
                        replaced = adopt_chunking(conn, names, chunking)
                    elif vectors_were is not None:
                        forget_chunking(conn, names)  # the first write records the new one
                said = [
                    f"source {source.source_name}, model {model.name}: tables"
                    f" embedkeeper.{names.relations.documents}, _chunks, _failures;"
                    f" view embedkeeper.{names.relations.view}"
                ]
                if full_text:
                    said.append(full_text)
                if vectors_were is not None:
                    said.append(reembed_said(vectors_were, settings_of(model)))
                elif (source.source_name, model.name) in reembed:
                    said.append("vector settings unchanged: nothing to embed again")
                if chunking is None:
                    said.append("chunking recorded by the first write (no tokenizer here)")
                elif replaced and vectors_were is None:
                    said.append(
                        f"chunking {chunking} (was {replaced}): every document is embedded again"
                    )
                print("; ".join(said))
            for source in config.sources:
                print(make_serving_view(conn, config, source))
    finally:
        app.close()


def reembed_said(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What `migrate --reembed` did, and what it costs until the passes are done."""
    return (
        f"vector settings changed ({'; '.join(changes(old, new))}): every document is embedded"
        " again by the next passes; until then search mixes the two vector spaces (old and new"
        " vectors rank against each other; `embedkeeper coverage` shows the progress). A new"
        " model name and `embedkeeper switch` avoid that"
    )


def make_serving_view(conn: psycopg.Connection[Any], config: Config, source: SourceConfig) -> str:
    """The source's serving view embedkeeper.<source>, first showing `serve` (else the first
    model that embeds the source), later the model `switch` chose; what it did, in a line."""
    name = source.source_name
    first = source.serve or next(m.name for s, m in config.pairs() if s is source)
    serving, now = settle_serving(conn, name, first)
    line = f"source {name}: serving view embedkeeper.{name} shows model {serving}"
    if now:
        return f"{line} (set now)"
    if source.serve and source.serve != serving:
        return (
            f"{line}; serve = {source.serve!r} is read only when the view is first made:"
            f" run `embedkeeper switch {name} {source.serve}` to change it"
        )
    return line
