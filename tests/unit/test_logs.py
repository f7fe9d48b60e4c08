"""Log lines: key=value events, JSON on request, journald priorities, and no password ever."""

from __future__ import annotations

import json
import logging

import pytest

from embedkeeper.logs import event, setup_logging

SENTINEL = "S3ntinelPassw0rd"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_carry_the_event_and_mask_passwords(capsys, monkeypatch, restore_logging):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("INFO", "text")
    log = logging.getLogger("embedkeeper.test")
    event(log, logging.INFO, "connecting", url=f"postgresql://ek:{SENTINEL}@db/x", docs=3)
    log.warning("raw message with postgres://u:%s@h/db", SENTINEL)
    err = capsys.readouterr().err
    assert SENTINEL not in err
    assert "connecting url=postgresql://ek:***@db/x docs=3" in err


def test_json_lines_are_objects_with_the_fields(capsys, restore_logging):
    setup_logging("INFO", "json")
    event(logging.getLogger("embedkeeper.test"), logging.INFO, "pass_done", ok=5, model="m")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["event"], line["ok"], line["model"], line["level"]) == (
        "pass_done",
        5,
        "m",
        "INFO",
    )


def test_under_journald_lines_start_with_a_priority(capsys, monkeypatch, restore_logging):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    setup_logging("INFO", "text")
    logging.getLogger("embedkeeper.test").error("boom")
    assert capsys.readouterr().err.startswith("<3>ERROR embedkeeper.test: boom")


def test_lines_carry_the_run_and_batch_ids(capsys, monkeypatch, restore_logging):
    import contextvars

    from embedkeeper.logs import set_log_fields

    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("INFO", "text")
    log = logging.getLogger("embedkeeper.test")

    def in_a_pass() -> None:
        set_log_fields(run=42, batch=3)
        event(log, logging.INFO, "batch_written", docs=5)
        set_log_fields(batch=None)
        log.warning("between batches")

    set_log_fields(run=None, batch=None)  # earlier tests' passes ran in this thread
    contextvars.copy_context().run(in_a_pass)
    log.info("outside any pass")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("batch_written docs=5 run=42 batch=3")
    assert lines[1].endswith("between batches run=42")
    assert lines[2].endswith("outside any pass")
