"""Start-up shared by every command: find the database, check it, load and check the models.

Every check runs before the first write (the model registry row), so a fatal error leaves the
database as it was. Models load on demand: a backfill with nothing to do never loads one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from embedkeeper.backends import Backend, make_backend
from embedkeeper.config import Config, ModelConfig
from embedkeeper.store.db import connect, database_url
from embedkeeper.store.preflight import check_database, check_model, check_registry, register_model
from embedkeeper.store.queries import SourceQueries

BackendFactory = Callable[[ModelConfig], Backend]


@dataclass(slots=True)
class App:
    config: Config
    url: str
    queries: SourceQueries
    backend_factory: BackendFactory = make_backend
    backends: dict[str, Backend] = field(default_factory=dict)

    def backend(self, model: ModelConfig) -> Backend:
        """The model's backend, loaded and checked against config and stored vectors once."""
        if model.name not in self.backends:
            backend = self.backend_factory(model)
            try:
                with connect(self.url, timeout_s=self.config.connect_timeout_s) as conn:
                    check_model(conn, model, backend.dimensions)
                    register_model(conn, model, backend.dimensions)
            except BaseException:
                backend.close()
                raise
            self.backends[model.name] = backend
        return self.backends[model.name]

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


def open_app(config: Config, backend_factory: BackendFactory | None = None) -> App:
    """Check the database, the source and the models' stored dimensions; load no model yet."""
    url = database_url(config)
    with connect(url, timeout_s=config.connect_timeout_s) as conn:
        queries = check_database(conn, config.source)
        for model in config.models:
            if model.dimensions is not None:
                check_registry(conn, model, model.dimensions)
    return App(config, url, queries, backend_factory or partial(make_backend, retry=config.retry))
