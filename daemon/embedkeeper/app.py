"""Start-up shared by every command: find the database, check it, load and check the models.

Every check runs before the first write (the model registry row), so a fatal error leaves the
database as it was. Models load on demand: a backfill with nothing to do never loads one.
Each (source, model) pair is one Pair (store/pair/pair.py: its names, key type, dimensions,
chunking fingerprint and statements), made once here (`App.pairs`), and each model has its
chunker (`App.chunking`), built from the config and the model's files without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg

from embedkeeper.backends import Backend, make_backend
from embedkeeper.backends.lazy import LazyBackend
from embedkeeper.chunking.for_model import ModelChunking, model_chunking
from embedkeeper.config import Config, ModelConfig, SourceConfig
from embedkeeper.errors import ConfigError, ModelError
from embedkeeper.store.db import connect, database_url
from embedkeeper.store.index.vector_index import IndexTarget, index_target
from embedkeeper.store.pair.full_text import full_text_config, set_full_text
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair, vector_column_type
from embedkeeper.store.pair.vector_settings import check_vector_settings, settings_of
from embedkeeper.store.pair.view import replace_view
from embedkeeper.store.report.coverage import Coverage, measure, measure_unmade
from embedkeeper.store.source.preflight import (
    check_database,
    check_model,
    check_registry,
    register_model,
    registered_dimensions,
)

BackendFactory = Callable[[ModelConfig], Backend]


@dataclass(slots=True)
class App:
    """`pairs`: every (source, model) pair the config embeds, by (source name, model name), in
    the config's order (store/pair/pair.py). Each method that takes `source` means the
    config's first source when given none."""

    config: Config
    url: str
    pairs: dict[tuple[str, str], Pair]
    backend_factory: BackendFactory = make_backend
    backends: dict[str, Backend] = field(default_factory=dict)
    _chunking: dict[str, ModelChunking] = field(default_factory=dict)
    _lazy: dict[str, Backend] = field(default_factory=dict)

    def pair(self, model: ModelConfig, source: SourceConfig | None = None) -> Pair:
        """The pair of this model and source (the config's first by default)."""
        source = source or self.config.source
        try:
            return self.pairs[(source.source_name, model.name)]
        except KeyError:
            raise ConfigError(
                f'[[models]] "{model.name}" does not embed source "{source.source_name}"'
                f" (its sources = {list(model.sources or [])}); name another --model or --source"
            ) from None

    def chosen(self, source: str | None = None, model: str | None = None) -> list[Pair]:
        """The pairs a command's --source and --model pick (Config.chosen_pairs: an unknown
        name is an error), in the config's order."""
        return [self.pair(m, s) for s, m in self.config.chosen_pairs(source, model)]

    def pairs_of(self, model: ModelConfig) -> list[Pair]:
        return [pair for pair in self.pairs.values() if pair.model_name == model.name]

    def is_made(self, conn: psycopg.Connection[Any], pair: Pair) -> bool:
        """Whether the pair's tables exist. Read paths (search, coverage, stats, failures) ask
        this and never make them, nor load a model to learn its dimensions: an unmade pair has
        nothing embedded and nothing failed."""
        return vector_column_type(conn, pair.names) is not None

    def make_tables(self, conn: psycopg.Connection[Any], pair: Pair) -> None:
        """The pair's tables made if missing: from the dimensions known at start (the config's,
        the registry's), else those another pair of the model registered since, else by
        loading the model."""
        if not self.is_made(conn, pair):
            dimensions = pair.dimensions or registered_dimensions(conn, pair.model)
            self.ensure_tables(conn, pair, dimensions or self.backend(pair.model).dimensions)

    def lazy_backend(self, model: ModelConfig) -> Backend:
        """The model's backend, loaded (and checked) by the first call that needs the model:
        a pass that finds nothing to embed never starts torch (backends/lazy.py)."""
        if model.name in self.backends:
            return self.backends[model.name]
        if model.name not in self._lazy:
            dimensions = next((p.dimensions for p in self.pairs_of(model)), model.dimensions)
            self._lazy[model.name] = LazyBackend(partial(self.backend, model), dimensions)
        return self._lazy[model.name]

    def index_target(self, conn: psycopg.Connection[Any], pair: Pair) -> IndexTarget:
        """The pair's chunks as an index target (tables made first if missing)."""
        self.make_tables(conn, pair)
        return index_target(conn, pair.names)

    def coverage(self, conn: psycopg.Connection[Any], pair: Pair) -> Coverage:
        """One pair's coverage, by its chunking's fingerprint; a pair not made yet has all its
        documents pending (no table is made by a read)."""
        if not self.is_made(conn, pair):
            return measure_unmade(conn, pair)
        return measure(conn, pair, self.chunking(pair.model).fingerprint)

    def chunking(self, model: ModelConfig) -> ModelChunking:
        if model.name not in self._chunking:
            self._chunking[model.name] = model_chunking(model)
        return self._chunking[model.name]

    def fingerprint_here(self, model: ModelConfig) -> str | None:
        """The model's chunking fingerprint, or None where its tokenizer is not installed here
        (`migrate` from an install without the model, `embedkeeper[embedded]` alone): the
        pair's first write records its settings then."""
        try:
            return self.chunking(model).fingerprint
        except ModelError:
            return None

    def backend(self, model: ModelConfig) -> Backend:
        """The model's backend, loaded and checked against config and stored vectors once; the
        pair's tables are made if they are missing (by a role that may)."""
        if model.name not in self.backends:
            self.chunking(model)  # a bad chunking setting fails before the model loads
            backend = self.backend_factory(model)
            try:
                with connect(self.url, timeout_s=self.config.connect_timeout_s) as conn:
                    check_model(conn, model, backend.dimensions)
                    for pair in self.pairs_of(model):
                        self.ensure_tables(conn, pair, backend.dimensions)
                    register_model(conn, model, backend.dimensions)
            except BaseException:
                backend.close()
                raise
            self.backends[model.name] = backend
        return self.backends[model.name]

    def ensure_tables(self, conn: psycopg.Connection[Any], pair: Pair, dimensions: int) -> bool:
        """Make the pair's tables if missing (True then) and hold them to their record."""
        record = PairRecord(
            pair.source.display_name,
            pair.key_type,
            dimensions,
            pair.storage,
            pair.chunking,
            settings_of(pair.model),
        )
        created = ensure_pair(conn, pair.names, record)
        if created:
            set_full_text(conn, pair.names, pair.source.full_text)
            replace_view(conn, pair.statements)
        return created

    def full_text_to_add(self) -> list[PairNames]:
        """The pairs whose source asks for `full_text` that their chunks lack: writes go on
        without it, `search` refuses until `migrate` (as the owner) adds it."""
        missing = []
        with connect(self.url, timeout_s=self.config.connect_timeout_s) as conn:
            for pair in self.pairs.values():
                names = pair.names
                made = self.is_made(conn, pair)
                if pair.source.full_text and made and full_text_config(conn, names) is None:
                    missing.append(names)
        return missing

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


def open_app(
    config: Config,
    backend_factory: BackendFactory | None = None,
    *,
    reembedding: frozenset[tuple[str, str]] = frozenset(),
) -> App:
    """Check the database, the source, the models' stored dimensions and each made pair's
    vector settings (`reembedding`: the (source, model) pairs whose new ones `migrate
    --reembed` is adopting, exempt), and make each pair; load no model yet (a model's
    tokenizer, where installed, gives its chunking fingerprint)."""
    url = database_url(config)
    with connect(url, timeout_s=config.connect_timeout_s) as conn:
        key_types = {s.source_name: check_database(conn, s).id_type for s in config.sources}
        held = [
            (PairNames.of(source.source_name, model.name), settings_of(model))
            for source, model in config.pairs()
            if (source.source_name, model.name) not in reembedding
        ]
        check_vector_settings(conn, held)
        dimensions: dict[str, int | None] = {}
        for model in config.models:
            if model.dimensions is not None:
                check_registry(conn, model, model.dimensions)
            dimensions[model.name] = model.dimensions or registered_dimensions(conn, model)
    factory = backend_factory or partial(make_backend, retry=config.retry)
    app = App(config, url, {}, factory)
    for source, model in config.pairs():
        app.pairs[(source.source_name, model.name)] = Pair.of(
            source,
            model,
            key_types[source.source_name],
            dimensions=dimensions[model.name],
            chunking=app.fingerprint_here(model),
        )
    return app
