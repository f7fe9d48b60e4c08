"""What every benchmark needs: an embedded PostgreSQL in a temporary directory, a config file,
and a migrated template database holding public.docs, of which each measured run gets a fresh copy
(CREATE DATABASE ... TEMPLATE), so runs start from the same table."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

TEMPLATE = "bench_template"
# The config every null-backend benchmark starts from: public.docs and the null model.
NULL_CONFIG = """
[source]
table = "public.docs"
full_text = ""  # off: as the recorded figures (its cost: bench full_text)
[[models]]
name = "null"
backend = "null"
dimensions = 384
"""


class BenchDatabase:
    def __init__(self, server: Any, home: Path, config: Path) -> None:
        self.server = server
        self.home = home
        self.config = config

    def url(self, database: str = "postgres") -> str:
        uri: str = self.server.get_uri(database)
        return uri

    @property
    def unix_socket(self) -> str:
        info = self.server.get_postmaster_info()
        return f"{info.socket_dir}/.s.PGSQL.{info.port}"

    def copy(self, name: str, template: str | None = None) -> str:
        """A fresh copy of the template, or of the database at URL `template` (by file copy:
        no WAL for the whole database); returns its URL."""
        source = conninfo_to_dict(template)["dbname"] if template else TEMPLATE
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(str(source))
                )
            )
        return self.url(name)

    def create_docs(self, name: str, fill: Callable[[psycopg.Connection[Any]], None]) -> str:
        """A new database holding pgvector and public.docs (id bigint, body text), filled by
        `fill`, not migrated; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
            fill(conn)
        return self.url(name)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def bench_database(
    config_text: str, fill: Callable[[psycopg.Connection[Any]], None]
) -> Iterator[BenchDatabase]:
    """`fill` loads public.docs (id bigint, body text) into the template before it is migrated."""
    from embedkeeper.commands.migrate import migrate
    from embedkeeper.config import SourceConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    home = Path(tempfile.mkdtemp(prefix="embedkeeper-bench-"))
    server = get_server(home / "data", cleanup_mode="delete")
    config = home / "embedkeeper.toml"
    config.write_text(config_text)
    database = BenchDatabase(server, home, config)
    try:
        migrate(database.create_docs(TEMPLATE, fill), SourceConfig(schema="public", table="docs"))
        yield database
    finally:
        server.cleanup()
