"""Start-up shared by every command: find the database, check it, load and check the models.

Every check runs before the first write (the model registry row), so a fatal error leaves the
database as it was. Models load on demand: a backfill with nothing to do never loads one.
Each (source, model) pair has its own tables (store/pair/tables.py) and statements over them
(`App.pair`), and each model its chunker (`App.chunking`), built from the config and the model's
files without loading the model.
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
from embedkeeper.errors import ModelError
from embedkeeper.store.db import connect, database_url
from embedkeeper.store.index.vector_index import IndexTarget, index_target
from embedkeeper.store.pair.full_text import full_text_config, set_full_text
from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair, vector_column_type
from embedkeeper.store.pair.view import replace_view
from embedkeeper.store.report.coverage import Coverage, measure, measure_unmade
from embedkeeper.store.source.preflight import (
    check_database,
    check_model,
    check_registry,
    register_model,
    registered_dimensions,
)
from embedkeeper.store.source.queries import SourceQueries

BackendFactory = Callable[[ModelConfig], Backend]


@dataclass(slots=True)
class App:
    """`sources`: each source's own statements (no model's tables), by name. Each method that
    takes `source` means the config's first source when given none."""

    config: Config
    url: str
    sources: dict[str, SourceQueries]
    backend_factory: BackendFactory = make_backend
    backends: dict[str, Backend] = field(default_factory=dict)
    _chunking: dict[str, ModelChunking] = field(default_factory=dict)
    _lazy: dict[str, Backend] = field(default_factory=dict)

    @property
    def queries(self) -> SourceQueries:
        """The first source's statements."""
        return self.source_queries(None)

    def source_queries(self, source: SourceConfig | None) -> SourceQueries:
        return self.sources[(source or self.config.source).source_name]

    def names(self, model: ModelConfig, source: SourceConfig | None = None) -> PairNames:
        return PairNames.of((source or self.config.source).source_name, model.name)

    def pair(self, model: ModelConfig, source: SourceConfig | None = None) -> SourceQueries:
        """The statements of the source and this model, over the pair's own tables."""
        own = self.source_queries(source)
        return SourceQueries.for_pair(own.source, own.id_type, self.names(model, source))

    def ready_pair(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        source: SourceConfig | None = None,
    ) -> SourceQueries:
        """The pair's statements, its tables made first if missing: from the configured
        dimensions, else those of the model's other pairs, else by loading the model."""
        if vector_column_type(conn, self.names(model, source)) is None:
            dimensions = self.known_dimensions(conn, model) or self.backend(model).dimensions
            self.ensure_tables(conn, model, dimensions, source)
        return self.pair(model, source)

    def made_pair(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        source: SourceConfig | None = None,
    ) -> SourceQueries | None:
        """The pair's statements where its tables exist, else None: for read paths (search,
        coverage, stats, failures), which never make tables nor load a model to learn its
        dimensions."""
        if vector_column_type(conn, self.names(model, source)) is None:
            return None
        return self.pair(model, source)

    def read_pair(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        source: SourceConfig | None = None,
    ) -> SourceQueries:
        """The pair's statements where its tables exist, else the source's own (no pair tables:
        nothing embedded, nothing failed), for the read paths that count."""
        return self.made_pair(conn, model, source) or self.source_queries(source)

    def known_dimensions(self, conn: psycopg.Connection[Any], model: ModelConfig) -> int | None:
        """The model's dimensions without loading it: the config's, else the registry's."""
        return model.dimensions or registered_dimensions(conn, model)

    def lazy_backend(self, model: ModelConfig) -> Backend:
        """The model's backend, loaded (and checked) by the first call that needs the model:
        a pass that finds nothing to embed never starts torch (backends/lazy.py)."""
        if model.name in self.backends:
            return self.backends[model.name]
        if model.name not in self._lazy:  # the registry read once, not on every daemon tick
            with connect(self.url, timeout_s=self.config.connect_timeout_s) as conn:
                dimensions = self.known_dimensions(conn, model)
            self._lazy[model.name] = LazyBackend(partial(self.backend, model), dimensions)
        return self._lazy[model.name]

    def index_target(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        source: SourceConfig | None = None,
    ) -> IndexTarget:
        """The pair's chunks as an index target (tables made first if missing)."""
        self.ready_pair(conn, model, source)
        return index_target(conn, self.names(model, source))

    def coverage(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        source: SourceConfig | None = None,
    ) -> Coverage:
        """One pair's coverage, by its chunking's fingerprint; a pair not made yet has all its
        documents pending (no table is made by a read)."""
        queries = self.made_pair(conn, model, source)
        if queries is None:
            return measure_unmade(conn, self.source_queries(source), model.name)
        return measure(conn, queries, model.name, self.chunking(model).fingerprint)

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
                    for source, paired in self.config.pairs():
                        if paired.name == model.name:
                            self.ensure_tables(conn, model, backend.dimensions, source)
                    register_model(conn, model, backend.dimensions)
            except BaseException:
                backend.close()
                raise
            self.backends[model.name] = backend
        return self.backends[model.name]

    def ensure_tables(
        self,
        conn: psycopg.Connection[Any],
        model: ModelConfig,
        dimensions: int,
        source: SourceConfig | None = None,
    ) -> bool:
        """Make the pair's tables if missing (True then) and hold them to their record."""
        own = self.source_queries(source)
        record = PairRecord(
            own.source.display_name,
            own.id_type,
            dimensions,
            model.storage,
            self.fingerprint_here(model),
        )
        names = self.names(model, source)
        created = ensure_pair(conn, names, record)
        if created:
            set_full_text(conn, names, own.source.full_text)
            replace_view(conn, self.pair(model, source))
        return created

    def full_text_to_add(self) -> list[PairNames]:
        """The pairs whose source asks for `full_text` that their chunks lack: writes go on
        without it, `search` refuses until `migrate` (as the owner) adds it."""
        missing = []
        with connect(self.url, timeout_s=self.config.connect_timeout_s) as conn:
            for source, model in self.config.pairs():
                names = self.names(model, source)
                made = vector_column_type(conn, names) is not None
                if source.full_text and made and full_text_config(conn, names) is None:
                    missing.append(names)
        return missing

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


def open_app(config: Config, backend_factory: BackendFactory | None = None) -> App:
    """Check the database, the source and the models' stored dimensions; load no model yet."""
    url = database_url(config)
    with connect(url, timeout_s=config.connect_timeout_s) as conn:
        sources = {s.source_name: check_database(conn, s) for s in config.sources}
        for model in config.models:
            if model.dimensions is not None:
                check_registry(conn, model, model.dimensions)
    return App(config, url, sources, backend_factory or partial(make_backend, retry=config.retry))
