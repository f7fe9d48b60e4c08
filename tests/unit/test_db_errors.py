"""Driver errors become ours: a lost connection is transient; a full lock table names the fix."""

from __future__ import annotations

import sys

import psycopg
import pytest

from embedkeeper.errors import DatabaseError, DatabaseUnavailable
from embedkeeper.store.db import mapped_errors


def test_a_full_lock_table_is_fatal_and_names_the_fix():
    with (
        pytest.raises(DatabaseError, match="lower \\[\\[models\\]\\] claim_size") as error,
        mapped_errors("claiming documents"),
    ):
        raise psycopg.errors.OutOfMemory("out of shared memory")
    assert not isinstance(error.value, DatabaseUnavailable)


def test_a_lost_connection_is_transient():
    with (
        pytest.raises(DatabaseUnavailable, match="connection lost while writing"),
        mapped_errors("writing vectors"),
    ):
        raise psycopg.OperationalError("server closed the connection unexpectedly")


def test_no_url_without_the_embedded_server_names_the_extra_and_creates_nothing(
    monkeypatch, tmp_path
):
    from embedkeeper.errors import ConfigError
    from embedkeeper.store.db import start_embedded

    monkeypatch.setitem(sys.modules, "pgserver.postgres_server", None)  # import fails
    data_dir = tmp_path / "data"
    with pytest.raises(
        ConfigError, match=r"\[database\] url.*pip install 'embedkeeper\[embedded\]'"
    ):
        start_embedded(data_dir)
    assert not data_dir.exists()
