"""The command line's dispatch: every subcommand reaches its handler, and `--help` stays light."""

from __future__ import annotations

import argparse
import subprocess
import sys

from embedkeeper.cli import HANDLERS, build_parser, handler_of


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
