"""Shared fixtures: one embedded PostgreSQL + pgvector per test session, a fresh database per test
copied from a migrated template, and the real MiniLM model loaded once."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from embedkeeper.app import App, open_app
from embedkeeper.commands.migrate import migrate
from embedkeeper.config import Config, ModelConfig, parse_config
from embedkeeper.records import Document, Embedded
from embedkeeper.store.db import connect

TEMPLATE = "ek_template"
BARE_TEMPLATE = "ek_bare"
_counter = itertools.count()


class Server:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def url(self, database: str = "postgres") -> str:
        uri: str = self.handle.get_uri(database)
        return uri

    @property
    def unix_socket(self) -> str:
        info = self.handle.get_postmaster_info()
        return f"{info.socket_dir}/.s.PGSQL.{info.port}"

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg() -> Iterator[Server]:
    # Our own directory, not pytest's tmp_path: pytest prunes old tmp dirs of other runs.
    home = Path(tempfile.mkdtemp(prefix="embedkeeper-tests-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        handle = get_server(home / "data", cleanup_mode="delete")
    server = Server(handle)
    with server.admin() as conn:
        for name in (TEMPLATE, BARE_TEMPLATE):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(server.url(BARE_TEMPLATE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    with psycopg.connect(server.url(TEMPLATE), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
    migrate(server.url(TEMPLATE), source_config().source)
    yield server
    handle.cleanup()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def proxy(pg: Server) -> Iterator[Any]:
    """A TCP proxy in front of the session's PostgreSQL that a test can cut or take down."""
    from tests.tcp_proxy import TcpProxy

    front = TcpProxy(pg.unix_socket)
    front.up()
    yield front
    front.stop()


def database_name(url: str) -> str:
    return url.split("@/", 1)[1].split("?", 1)[0]


@pytest.fixture
def db_url(pg: Server) -> Iterator[str]:
    """A fresh database: pgvector, embedkeeper's schema at head, and an empty public.docs."""
    name = pg.create_database(TEMPLATE)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def bare_url(pg: Server) -> Iterator[str]:
    """A fresh database with pgvector and nothing else (not migrated)."""
    name = pg.create_database(BARE_TEMPLATE)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as connection:
        yield connection


MINILM_ENTRY = {"name": "minilm", "dimensions": 384, "batch_size": 16, "claim_size": 32}


def source_config(
    url: str | None = None, models: Sequence[dict[str, Any]] | None = None, **source: Any
) -> Config:
    """A Config on public.docs (or what **source says) with the MiniLM model."""
    given = {"table": "public.docs", "id_column": "id", "text_column": "body", **source}
    document: dict[str, Any] = {
        "source": {k: v for k, v in given.items() if v is not None},
        "models": list(models or [MINILM_ENTRY]),
        "retry": {
            "max_attempts": 2,
            "backoff": "1s",
            "transient_attempts": 2,
            "transient_backoff_max": "1s",
        },
    }
    env = {"EMBEDKEEPER_DATABASE_URL": url} if url else {}
    return parse_config(document, env, path=Path("test.toml"))


class SharedBackend:
    """The session's loaded model, shared by every App (close() leaves it loaded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[Any]] = []

    @property
    def dimensions(self) -> int:
        return int(self.inner.dimensions)

    @property
    def max_chars(self) -> int:
        return int(self.inner.max_chars)

    request_size = 1 << 30
    concurrency = 1

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        self.calls.append([d.id for d in documents])
        result: list[Embedded] = self.inner.embed(documents)
        return result

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def minilm() -> Any:
    from embedkeeper.backends.local import SentenceTransformerBackend

    return SentenceTransformerBackend(ModelConfig(name="minilm", device="cpu", batch_size=16))


@pytest.fixture
def backend(minilm: Any) -> SharedBackend:
    return SharedBackend(minilm)


@pytest.fixture
def make_app(backend: SharedBackend) -> Iterator[Any]:
    apps: list[App] = []

    def make(config: Config, backend_override: Any = None) -> App:
        chosen = backend_override or backend
        app = open_app(config, backend_factory=lambda model: chosen)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def one_pass(app: App, options: Any = None, backend: Any = None) -> Any:
    """One pass of the app's first model (a backfill-style hash sweep unless `options` says)."""
    import threading

    from embedkeeper.sync.passes import PassContext, run_pass
    from embedkeeper.sync.plan import PassOptions

    model = app.config.models[0]
    backend = backend or app.backend(model)
    options = options or PassOptions.backfill()
    return run_pass(PassContext(app, app.pair(model), backend, options, threading.Event()))


def insert_docs(
    conn: psycopg.Connection[Any], texts: Sequence[str | None], start: int = 1
) -> list[int]:
    ids = list(range(start, start + len(texts)))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.docs (id, body) VALUES (%s, %s)", list(zip(ids, texts, strict=True))
        )
    return ids


from tests.pairs import CHUNKS, FAILURES, RECORDS, pair_table  # noqa: E402,F401


def vectors(
    conn: psycopg.Connection[Any], model: str = "minilm", source: str = "docs"
) -> dict[Any, Any]:
    """Each document's first chunk's vector (the test texts are one chunk each); none before
    the pair's tables are made."""
    table = pair_table("chunks", model, source)
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
        return {}
    rows = conn.execute(
        f"SELECT document_id, embedding FROM {pair_table('chunks', model, source)}"  # noqa: S608
        " WHERE chunk = 0"
    ).fetchall()
    return {row[0]: row[1].to_numpy() for row in rows}
