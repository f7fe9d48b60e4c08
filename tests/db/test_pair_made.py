"""A pair's tables are made on first use: from the configured dimensions, else from those its
model already has in this database (no model loaded), else by loading the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from embedkeeper.app import open_app
from embedkeeper.config import parse_config
from embedkeeper.store.pair.tables import vector_column_type


def two_sources(url: str) -> Any:
    document = {
        "sources": [
            {"table": "public.docs"},
            {"name": "notes", "table": "public.notes", "id_column": "slug"},
        ],
        "models": [{"name": "minilm"}],  # no dimensions: read from the model, or the database
    }
    return parse_config(document, {"EMBEDKEEPER_DATABASE_URL": url}, path=Path("test.toml"))


class NotLoaded(Exception):
    pass


def refuse_to_load(model: Any) -> Any:
    raise NotLoaded(model.name)


def test_a_new_pair_of_a_known_model_is_made_without_loading_it(
    db_url: str, conn: psycopg.Connection[Any], make_app: Any
) -> None:
    conn.execute("CREATE TABLE public.notes (slug text PRIMARY KEY, body text)")
    config = two_sources(db_url)
    docs, notes = config.sources
    model = config.models[0]

    # Nothing registered yet: the model is loaded for its dimensions.
    unloaded = open_app(config, backend_factory=refuse_to_load)
    try:
        with pytest.raises(NotLoaded):
            unloaded.make_tables(conn, unloaded.pair(model, docs))
        # The first pair, made by loading the (real) model, registers its 384 dimensions.
        loaded = make_app(config)
        loaded.make_tables(conn, loaded.pair(model, docs))
        assert vector_column_type(conn, loaded.pair(model, docs).names) == "vector(384)"
        # The second pair of that model needs no model at all.
        unloaded.make_tables(conn, unloaded.pair(model, notes))
        assert vector_column_type(conn, unloaded.pair(model, notes).names) == "vector(384)"
    finally:
        unloaded.close()
