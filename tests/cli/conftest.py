"""Fixtures for the CLI tests: a test's config file, environment and background children."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import DEFAULT_TIMEOUT_S, Child, cli_env, run_cli, start_cli, write_config


class Cli:
    """The command bound to one test's database, config file and data dir."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url
        self.config = write_config(tmp_path)
        self.env = cli_env(tmp_path, db_url)
        self.children: list[Child] = []

    def configure(self, text: str | None = None, **sections: Any) -> Path:
        self.config = write_config(self.tmp_path, text, **sections)
        return self.config

    def args(self, args: Sequence[str]) -> list[str]:
        return [*args, "--config", str(self.config)]

    def __call__(
        self, *args: str, timeout: float = DEFAULT_TIMEOUT_S, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.args(args), {**self.env, **env}, timeout=timeout)

    def start(self, *args: str, **env: str) -> Child:
        child = start_cli(self.args(args), {**self.env, **env}, self.tmp_path / "logs")
        self.children.append(child)
        return child


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Iterator[Cli]:
    runner = Cli(tmp_path, db_url)
    yield runner
    for child in runner.children:
        child.stop()
