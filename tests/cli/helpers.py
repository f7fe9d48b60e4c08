"""Helpers for running the installed `embedkeeper` command in a subprocess against a test database.

Each child gets its own config file and data dir under tmp_path, the test database's URL in
EMBEDKEEPER_DATABASE_URL, and none of the caller's DATABASE_URL, NOTIFY_SOCKET or journald
variables, so nothing it does reaches the user's home or a real systemd.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
SENTINEL_PASSWORD = "S3ntinelPassw0rd"  # a marker that must never show in any output
DEFAULT_TIMEOUT_S = 120.0

_DROPPED_ENV = (
    "DATABASE_URL",
    "EMBEDKEEPER_DATABASE_URL",
    "EMBEDKEEPER_DATA_DIR",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
)

BASE_CONFIG: dict[str, Any] = {
    "source": {
        "table": "public.docs",
        "id_column": "id",
        "text_column": "body",
        "updated_at_column": "updated_at",
    },
    "models": [{"name": "minilm", "dimensions": 384, "batch_size": 16, "claim_size": 32}],
    "schedule": {"interval": "2s"},
    "retry": {
        "max_attempts": 2,
        "backoff": "1s",
        "transient_attempts": 2,
        "transient_backoff_max": "1s",
    },
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(document: Mapping[str, Any]) -> str:
    """Enough TOML for our configs: tables of scalars and arrays of such tables."""
    lines: list[str] = []
    for section, body in document.items():
        tables = body if isinstance(body, list) else [body]
        header = f"[[{section}]]" if isinstance(body, list) else f"[{section}]"
        for table in tables:
            lines.append(header)
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
            lines.append("")
    return "\n".join(lines)


def config_document(**sections: Any) -> dict[str, Any]:
    """BASE_CONFIG with sections merged in: a dict updates that section's keys, None removes the
    section (or, inside a dict, that key), `models=` (a list) replaces the models, `model=` (a dict)
    updates the first one."""
    document: dict[str, Any] = {
        "source": dict(BASE_CONFIG["source"]),
        "models": [dict(m) for m in BASE_CONFIG["models"]],
        "schedule": dict(BASE_CONFIG["schedule"]),
        "retry": dict(BASE_CONFIG["retry"]),
    }
    for name, value in sections.items():
        if name == "model":
            merged = {**document["models"][0], **value}
            document["models"][0] = {k: v for k, v in merged.items() if v is not None}
        elif value is None:
            document.pop(name, None)
        elif isinstance(value, dict) and isinstance(document.get(name), dict):
            document[name].update(value)
            document[name] = {k: v for k, v in document[name].items() if v is not None}
        else:
            document[name] = value
    return document


def write_config(tmp_path: Path, text: str | None = None, **sections: Any) -> Path:
    """Write embedkeeper.toml into tmp_path: `text` verbatim, or config_document(**sections)."""
    path = tmp_path / "embedkeeper.toml"
    path.write_text(text if text is not None else to_toml(config_document(**sections)))
    return path


def cli_env(tmp_path: Path, db_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    env["EMBEDKEEPER_DATA_DIR"] = str(data_dir)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if db_url is not None:
        env["EMBEDKEEPER_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], env: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EMBEDKEEPER), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Child:
    """A command running in the background; its stdout and stderr go to files (a pipe nobody
    reads could fill and stall it)."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def output(self) -> tuple[str, str]:
        return self.stdout_path.read_text(), self.stderr_path.read_text()

    def stop(self) -> None:
        """Clean-up: make sure the child (ours, by pid) is gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def start_cli(args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = log_dir / f"{args[0]}-{time.monotonic_ns()}"
    stdout_path, stderr_path = stem.with_suffix(".out"), stem.with_suffix(".err")
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [str(EMBEDKEEPER), *args],
            env=dict(env),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    return Child(process, stdout_path, stderr_path)


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.05,
    alive: Child | None = None,
) -> Any:
    """Poll until predicate() is truthy and return its value; fail with `what` on timeout or
    when the `alive` process exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            _, stderr = alive.output()
            raise AssertionError(f"process exited {alive.poll()} before {what}:\n{stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval_s)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("embedkeeper: error:")]


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, start: str) -> str:
    """The command failed with `code` and one `embedkeeper: error: ...` line, no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


def scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def count_rows(conn: psycopg.Connection[Any], table: str, model: str = "minilm") -> int:
    """Rows of one of embedkeeper's tables; a pair's tables that were never made hold none."""
    tables = {
        "embeddings": f"embedkeeper.docs__{model}_documents",
        "runs": "embedkeeper.runs",
        "models": "embedkeeper.models",
        "failures": f"embedkeeper.docs__{model}_failures",
    }
    if scalar(conn, "SELECT to_regclass(%s)", (tables[table],)) is None:
        return 0
    return int(scalar(conn, f"SELECT count(*) FROM {tables[table]}"))  # noqa: S608


def advisory_locks(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Advisory locks anyone holds or awaits in this database (claims are advisory locks)."""
    return conn.execute(
        "SELECT pid, classid, objid, granted FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()


def mismatched_vectors(conn: psycopg.Connection[Any]) -> list[Any]:
    """Ids of stored vectors whose content_hash is not md5 of the document's current body."""
    rows = conn.execute(
        "SELECT e.document_id FROM embedkeeper.docs__minilm_documents AS e"
        " LEFT JOIN public.docs AS d ON d.id = e.document_id"
        " WHERE d.id IS NULL OR e.content_hash <> decode(md5(d.body), 'hex')"
        " ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


_WORDS = (
    "postgres",
    "vector",
    "index",
    "table",
    "row",
    "page",
    "heap",
    "tuple",
    "query",
    "planner",
    "cost",
    "scan",
    "join",
    "hash",
    "sort",
    "buffer",
    "cache",
    "write",
    "ahead",
    "log",
    "checkpoint",
    "vacuum",
    "replica",
    "standby",
    "lock",
    "snapshot",
    "isolation",
    "commit",
    "abort",
    "schema",
    "column",
    "type",
    "cast",
    "function",
    "trigger",
    "extension",
    "embedding",
    "model",
    "token",
)


def paragraphs(count: int, sentences: int = 4) -> list[str]:
    """`count` distinct texts of a few sentences each (deterministic)."""
    texts = []
    for i in range(count):
        parts = []
        for s in range(sentences):
            words = [_WORDS[(i * 7 + s * 13 + k * 5) % len(_WORDS)] for k in range(14)]
            parts.append(f"Document {i} sentence {s}: " + " ".join(words) + ".")
        texts.append(" ".join(parts))
    return texts
