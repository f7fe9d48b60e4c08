"""The real-server tests use the CLI's fixtures: a config file, the command in a subprocess."""

from __future__ import annotations

from tests.cli.conftest import cli

__all__ = ["cli"]
