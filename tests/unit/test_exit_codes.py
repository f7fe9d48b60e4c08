"""The exit codes a stop and a held document give, as the code, the systemd units and the table
of docs/operations.md state them: one set of numbers in three places."""

from __future__ import annotations

import configparser
import re
import signal
from pathlib import Path

from embedkeeper.commands.backfill import EXIT_IN_REVIEW, EXIT_STILL_HELD
from embedkeeper.commands.switch import EXIT_INCOMPLETE
from embedkeeper.service.signals import Interrupted, Received

ROOT = Path(__file__).resolve().parents[2]


def success_codes(unit: str) -> set[int]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((ROOT / "systemd" / unit).read_text())
    return {int(code) for code in parser["Service"].get("SuccessExitStatus", "").split()}


def documented_exit_codes() -> dict[int, str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.*) \|$", table, re.M)}


def test_a_stop_exits_128_plus_the_signal():
    assert Received(signal.SIGTERM).exit_code == 143
    assert Received(signal.SIGINT).exit_code == 130
    assert Interrupted(signal.SIGTERM).exit_code == 143


def test_the_backfill_unit_counts_a_stop_and_review_as_success_but_not_held_documents():
    assert success_codes("embedkeeper-backfill.service") == {EXIT_IN_REVIEW, 130, 143}
    assert EXIT_STILL_HELD not in success_codes("embedkeeper-backfill.service")
    assert success_codes("embedkeeper-once.service") == {130, 143}


def test_the_documented_table_has_every_code():
    codes = documented_exit_codes()
    assert set(codes) == {0, 1, 2, EXIT_IN_REVIEW, EXIT_STILL_HELD, EXIT_INCOMPLETE, 130, 143}
    assert "SIGTERM" in codes[143]
    assert "SuccessExitStatus=3 130 143" in codes[143]
    assert "claim_lease" in codes[EXIT_STILL_HELD]
    assert "--force" in codes[EXIT_INCOMPLETE]
