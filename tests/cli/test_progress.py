"""`backfill` progress through the installed command: log lines on a non-terminal and the bar on
a terminal both move while one claimed batch of 1,024 is with the model, which here is an Ollama
stand-in answering requests of 64 a little slowly (16 slices per batch)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator

import pytest

from tests.cli.helpers import EMBEDKEEPER
from tests.conftest import insert_docs
from tests.standin import StandIn

BATCH = 1024


@pytest.fixture
def server(minilm) -> Iterator[StandIn]:
    standin = StandIn(minilm.model)
    standin.faults.hang_first, standin.faults.hang_s = 40, 0.25  # every request, a little slow
    yield standin
    standin.stop()


@pytest.fixture
def one_batch(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(BATCH)])
    cli.configure(
        models=[
            {
                "name": "nomic",
                "backend": "ollama",
                "model": "m",
                "url": server.url,
                "batch_size": 64,
                "claim_size": BATCH,
            }
        ]
    )


def test_a_backfill_logs_progress_with_an_eta_within_one_batch_of_1024(cli, conn, one_batch):
    result = cli("backfill")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"nomic: {BATCH} embedded, 0 failed")
    assert conn.execute("SELECT docs_ok FROM embedkeeper.runs").fetchall() == [(BATCH,)]
    lines = [line for line in result.stderr.splitlines() if " progress " in f" {line}"]
    dones = [int(re.search(r" done=(\d+)", line).group(1)) for line in lines]  # type: ignore[union-attr]
    within_the_batch = [done for done in dones if 0 < done < BATCH]
    assert len(within_the_batch) >= 8, result.stderr  # about one a tenth, before any write
    assert all(f"total={BATCH}" in line and re.search(r"eta_s=\d+", line) for line in lines)


def test_the_bar_on_a_terminal_moves_within_one_batch_of_1024(cli, one_batch):
    primary, secondary = pty.openpty()
    # A fresh pty is 0 columns wide, which tqdm draws as nothing: give it a terminal's size.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    child = subprocess.Popen(
        [str(EMBEDKEEPER), *cli.args(["backfill"])],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def read_all() -> None:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        assert child.wait(timeout=180) == 0
    finally:
        if child.poll() is None:
            child.kill()
        reader.join(timeout=10)
        os.close(primary)

    screen = b"".join(chunks).decode(errors="replace")
    shown = {int(n) for n in re.findall(rf"(\d+)/{BATCH}\b", screen)}
    assert {n for n in shown if 0 < n < BATCH}, screen  # the bar stood between 0 and 1,024
    assert BATCH in shown
