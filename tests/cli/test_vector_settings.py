"""Vector settings bound to the pair, through the installed command: a changed prefix under the
same model name stops every command with exit 1 and one line naming old and new and both ways
out; `migrate --reembed SOURCE MODEL` adopts it, says that search mixes two spaces until the
pair is embedded again, and the commands start again."""

from __future__ import annotations

from tests.cli.helpers import assert_one_error_line
from tests.conftest import insert_docs

FAST = {"name": "fast", "backend": "null", "dimensions": 384}


def test_a_changed_prefix_is_refused_until_migrate_reembed_adopts_it(cli, conn):
    insert_docs(conn, ["one text", "another text"])
    cli.configure(models=[FAST])
    assert cli("migrate").returncode == 0
    assert cli("backfill").returncode == 0

    cli.configure(models=[{**FAST, "prefix": "passage: "}])
    for args in (("coverage",), ("backfill",), ("migrate",)):
        line = assert_one_error_line(cli(*args), 1, "embedkeeper: error:")
        assert "prefix '' -> 'passage: '" in line
        assert "`embedkeeper switch docs NEWNAME`" in line
        assert "`embedkeeper migrate --reembed docs fast`" in line

    unknown = cli("migrate", "--reembed", "docs", "nope")
    assert_one_error_line(unknown, 1, "embedkeeper: error:")

    adopted = cli("migrate", "--reembed", "docs", "fast")
    assert adopted.returncode == 0, adopted.stderr
    assert "vector settings changed (prefix '' -> 'passage: ')" in adopted.stdout
    assert "search mixes the two vector spaces" in adopted.stdout
    coverage = cli("coverage", "--json")
    assert coverage.returncode == 0, coverage.stderr
    assert '"stale": 2' in coverage.stdout
    assert cli("backfill").returncode == 0
    assert '"stale": 0' in cli("coverage", "--json").stdout
