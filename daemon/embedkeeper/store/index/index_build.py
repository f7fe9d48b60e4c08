"""A vector index build: its HNSW parameters, checked against pgvector's ranges, and how it runs.

A build runs in the caller's transaction, so its session settings are SET LOCAL and end with it:
the memory and parallel workers a large graph needs. An HNSW graph that outgrows
maintenance_work_mem goes on building, slowly; pgvector says so in a notice, which is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from embedkeeper.errors import UsageError
from embedkeeper.logs import event

if TYPE_CHECKING:
    from embedkeeper.store.index.vector_index import IndexTarget

# Every index event is logged under one name, as it was before the build had a module of its own.
log = logging.getLogger("embedkeeper.store.index.vector_index")

OPCLASSES = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}
MIN_MEMORY_MB = 64
DEFAULT_MAX_MEMORY_MB = 4096
DEFAULT_WORKERS = 2


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """Session settings for a build. `memory_mb` None: enough for the model's rows (estimated),
    between 64 MB and `max_memory_mb`; a graph larger than maintenance_work_mem builds slowly."""

    memory_mb: int | None = None
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    workers: int = DEFAULT_WORKERS  # max_parallel_maintenance_workers (the leader works too)


@dataclass(frozen=True, slots=True)
class HnswParams:
    opclass: str = "cosine"
    m: int = 16
    ef_construction: int = 64

    def check(self) -> None:
        if self.opclass not in OPCLASSES:
            raise UsageError(f'unknown opclass "{self.opclass}"; use one of {", ".join(OPCLASSES)}')
        if not 2 <= self.m <= 100:
            raise UsageError(f"--m {self.m} is out of range; pgvector takes 2 to 100")
        if not 2 * self.m <= self.ef_construction <= 1000:
            raise UsageError(
                f"--ef-construction {self.ef_construction} is out of range; pgvector takes "
                f"2 * m ({2 * self.m}) to 1000"
            )


def build_indexes(
    conn: psycopg.Connection[Any],
    target: IndexTarget,
    statements: Sequence[sql.SQL | sql.Composed],
    settings: BuildSettings | None,
) -> float:
    """Run the builds in the caller's transaction with the build settings (SET LOCAL); returns
    the seconds they took."""
    if not statements:
        return 0.0
    start = time.perf_counter()
    settings = settings or BuildSettings()
    memory_mb = settings.memory_mb or _memory_needed(conn, target, settings.max_memory_mb)
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{memory_mb}MB",))
    conn.execute(
        "SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(settings.workers),)
    )
    conn.add_notice_handler(_on_notice)  # pgvector: "hnsw graph no longer fits into ..."
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.remove_notice_handler(_on_notice)
    return time.perf_counter() - start


def _on_notice(diag: psycopg.errors.Diagnostic) -> None:
    event(log, logging.WARNING, "index_build_notice", detail=diag.message_primary or "")


def _memory_needed(conn: psycopg.Connection[Any], target: IndexTarget, cap_mb: int) -> int:
    """The graph's size in memory: per row the vector, two layers of neighbours and overhead."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target.qualified)).fetchone()
    rows, dims = (int(row[0]) if row else 0), target.dimensions
    needed_mb = rows * (4 * dims + 2 * 16 * 8 + 256) * 1.25 / 2**20
    return int(min(cap_mb, max(MIN_MEMORY_MB, needed_mb)))
