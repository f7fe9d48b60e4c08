"""The command line's dispatch: every subcommand reaches its handler, and `--help` stays light."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from embedkeeper.cli import HANDLERS, build_parser, handler_of, main


def test_every_subcommand_has_a_handler_that_imports():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(HANDLERS)
    for command in HANDLERS:
        assert callable(handler_of(command))


def test_help_imports_no_command_and_no_driver():
    probe = (
        "import sys\n"
        "from embedkeeper.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('embedkeeper.commands', 'psycopg'))),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "[]"


def test_demo_offers_no_config_option_it_would_ignore(capsys):
    with pytest.raises(SystemExit) as done:
        main(["demo", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert "--config" not in help_text
    assert "--data-dir" in help_text

    with pytest.raises(SystemExit) as done:
        main(["demo", "--config", "x.toml"])
    assert done.value.code == 2
    assert "unrecognized arguments: --config x.toml" in capsys.readouterr().err

    # Before the command, the top-level parser takes it: refused by name, not ignored.
    assert main(["--config", "x.toml", "demo"]) == 2
    assert capsys.readouterr().err == (
        "embedkeeper: error: demo takes no --config: it always uses the demo setup\n"
    )


def test_the_demo_runs_backfill_with_every_option_its_parser_gives():
    """`demo` calls the backfill command with a namespace of its own: it must carry every
    option the backfill parser defines (a missing --source broke `make demo` once)."""
    from embedkeeper.cli import build_parser
    from embedkeeper.commands.demo import backfill_args

    parsed = build_parser().parse_args(["backfill"])
    expected = {k: v for k, v in vars(parsed).items() if k not in COMMON_OPTIONS}
    assert vars(backfill_args()) == expected


COMMON_OPTIONS = {"command", "config", "data_dir", "verbose", "log_format"}
