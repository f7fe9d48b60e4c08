#!/usr/bin/env bash
# Writes tests/data/v0_1.sql: a database as embedkeeper v0.1 (commit 3d3a943) leaves it, made by
# that release's own CLI and code (README.md here says what is in it and why).
#
#   git worktree add --detach /tmp/v01 3d3a943 && make -C /tmp/v01 .venv/.installed
#   tests/data/make_v0_1.sh /tmp/v01
set -euo pipefail
release=${1:?usage: make_v0_1.sh CHECKOUT (of 3d3a943, with its .venv built by make)}
release=$(cd "$release" && pwd)
out="$(cd "$(dirname "$0")" && pwd)/v0_1.sql"
commit=$(git -C "$release" rev-parse --short=7 HEAD)
if [ "$commit" != 3d3a943 ]; then
    echo "make_v0_1.sh: $release is at $commit, not the v0.1 release 3d3a943" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
HF_HUB_OFFLINE=1 "$release/.venv/bin/python" - "$release" "$work" "$out" <<'PY'
import os
import subprocess
import sys
import time
import tomllib
from functools import partial
from pathlib import Path

import pgserver
import psycopg

from embedkeeper.app import open_app
from embedkeeper.backends import make_backend
from embedkeeper.commands.backfill import backfill
from embedkeeper.config import parse_config
from embedkeeper.errors import InputRejected
from embedkeeper.store.deferred_index import indexes_deferred
from embedkeeper.store.index_build import BuildSettings
from pgserver.postgres_server import get_server

release, work, out = (Path(a) for a in sys.argv[1:4])
BIN = release / ".venv" / "bin"

TEXTS = [
    "PostgreSQL stores each table in files of one gigabyte segments under the data directory.",
    "The pgvector extension adds a vector type and indexes for nearest-neighbour search.",
    "An HNSW index builds a layered graph; queries walk it from the top layer down.",
    "Autovacuum reclaims dead tuples and keeps the planner's statistics fresh.",
    "A write-ahead log record is flushed before the data page it describes.",
    "Honey never spoils: sealed jars found in ancient tombs were still edible.",
    "The Amazon river carries more water to the sea than the next seven rivers combined.",
    "Octopuses have three hearts and blue blood rich in copper.",
    "Mount Everest grows by a few millimetres a year as the Indian plate pushes north.",
    "A day on Venus is longer than its year.",
    "Bread dough rises because yeast turns sugars into carbon dioxide and alcohol.",
    "Cast iron pans are seasoned with thin layers of oil baked into a polymer.",
    "Espresso is brewed by forcing hot water through finely ground coffee at high pressure.",
    "Sourdough starters are cultures of wild yeast and lactic acid bacteria.",
    "Risotto gets its creaminess from starch released by stirring the rice.",
    "The Rosetta Stone carries one decree in hieroglyphic, demotic and Greek scripts.",
    "The printing press spread across Europe within fifty years of Gutenberg's first Bible.",
    "The Silk Road linked Chinese markets with the Mediterranean for over a millennium.",
    "Roman concrete hardened in seawater thanks to volcanic ash in the mix.",
    "The Great Fire of London in 1666 burned for four days.",
    "A marathon is 42.195 kilometres, a distance fixed at the 1908 London Olympics.",
    "Chess engines evaluate millions of positions per second with alpha-beta search.",
    "A cricket test match can last five days and still end in a draw.",
    "Table tennis balls have been 40 millimetres across since the year 2000.",
    "Cyclists in a peloton save energy by riding in each other's slipstream.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Tides rise and fall twice a day, pulled mostly by the Moon.",
    "Lightning heats the air around it to about five times the surface of the Sun.",
    "Bees communicate the direction of flowers with a waggle dance.",
    "Glaciers move downhill under their own weight, a few metres a day at most.",
]
BLANK = "   "
# Texts the stand-in below rejects, as a server rejects a text it cannot read (HTTP 422).
REJECTED = [
    "Caf\ufffd menu: espresso, cortado and flat white, served until noon.",
    "The r\ufffdsum\ufffd arrived in the wrong encoding and was garbled.",
]
CONFIG = """
[source]
table = "public.docs"
id_column = "id"
text_column = "body"
updated_at_column = "updated_at"

[[models]]
name = "minilm"
device = "cpu"
batch_size = 16

[[models]]
name = "nullm"
backend = "null"
dimensions = 8

[retry]
max_attempts = {max_attempts}
backoff = "1s"
"""


class RejectsReplacementCharacters:
    """The release's own backend for the model, except that a text holding U+FFFD (a mis-decoded
    byte) is refused as a server refuses it: InputRejected, which the release charges to that
    document only."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, documents):
        if any("\ufffd" in d.text for d in documents):
            raise InputRejected("input is not valid UTF-8 text (U+FFFD)")
        return self.inner.embed(documents)


def cli(*args, check=True):
    result = subprocess.run(
        [str(BIN / "embedkeeper"), "--config", str(work / "embedkeeper.toml"), *args],
        env=ENV, capture_output=True, text=True, check=False,
    )
    print(f"$ embedkeeper {' '.join(args)} -> {result.returncode}\n{result.stdout}", flush=True)
    if check and result.returncode != 0:
        sys.exit(f"failed:\n{result.stderr}")


def write_config(max_attempts):
    text = CONFIG.format(max_attempts=max_attempts)
    (work / "embedkeeper.toml").write_text(text)
    return parse_config(tomllib.loads(text), ENV, path=work / "embedkeeper.toml")


def backfill_rejecting(config):
    """The release's backfill (what `embedkeeper backfill --model minilm` runs), with the
    rejecting stand-in around the model's own backend."""
    factory = partial(make_backend, retry=config.retry)
    app = open_app(config, lambda m: RejectsReplacementCharacters(factory(m)))
    try:
        result = backfill(app, [config.model("minilm")])
    finally:
        app.close()
    print("minilm:", result.results["minilm"].stats, flush=True)


handle = get_server(work / "pg", cleanup_mode="delete")
try:
    with psycopg.connect(handle.get_uri(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE ek_v01")
    url = handle.get_uri("ek_v01")
    ENV = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    ENV.update(EMBEDKEEPER_DATABASE_URL=url, EMBEDKEEPER_DATA_DIR=str(work / "data"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute(
            "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        for i, text in enumerate([*TEXTS, BLANK], start=1):
            conn.execute("INSERT INTO public.docs (id, body) VALUES (%s, %s)", (i, text))

    config = write_config(max_attempts=2)
    cli("migrate")
    cli("backfill")  # both models: 30 vectors each, the blank one skipped

    # Two documents the model rejects: the first retried at once by the backfill until
    # max_attempts (2), the second under max_attempts = 1; both end in review.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO public.docs (id, body) VALUES (101, %s)", (REJECTED[0],))
    backfill_rejecting(config)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO public.docs (id, body) VALUES (102, %s)", (REJECTED[1],))
    backfill_rejecting(write_config(max_attempts=1))

    cli("index", "create", "--model", "minilm")
    cli("index", "create", "--model", "nullm")
    # A `backfill --defer-index` of nullm that dies after dropping the index: the release's
    # deferral records the index's definition and drops it; a second Ctrl-C skips the rebuild.
    try:
        with indexes_deferred(url, "nullm", BuildSettings()):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    cli("index", "status")
    cli("failures", "list", check=False)  # exits 3: documents in review

    dump = [str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump")]
    dump += ["--no-owner", "--no-privileges", "-d", url]
    header = (
        "-- embedkeeper v0.1 (commit 3d3a943): the source table public.docs and schema\n"
        "-- embedkeeper, as that release's CLI left them; made by tests/data/make_v0_1.sh.\n\n"
    )
    docs = subprocess.run([*dump, "--table=public.docs"], capture_output=True, text=True,
                          check=True).stdout
    schema = subprocess.run([*dump, "--schema=embedkeeper"], capture_output=True, text=True,
                            check=True).stdout
    out.write_text(header + docs + "\n" + schema)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
finally:
    handle.cleanup()
PY
