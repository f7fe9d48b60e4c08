"""The real infinity-emb server, in its own virtualenv (`make test-servers` builds .venv-infinity),
started on loopback for a test and stopped by its pid.

infinity serves POST /embeddings at its root, answers an unknown model with HTTP 400 once it
serves two or more (with one, it answers any name with that model), and counts `usage` in
characters. It is found by EMBEDKEEPER_INFINITY (the Makefile sets it), else in .venv-infinity.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0  # two models on two busy cores took 50 s


def infinity_command() -> Path | None:
    """The infinity_emb executable, or None where it is not installed."""
    named = os.environ.get("EMBEDKEEPER_INFINITY")
    path = Path(named) if named else ROOT / ".venv-infinity" / "bin" / "infinity_emb"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Infinity:
    """One infinity process at a time on a fixed port, so a restart keeps the URL."""

    def __init__(self, command: Path, model_dir: str, log_path: Path) -> None:
        self.command = command
        self.model_dir = model_dir
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *names: str) -> float:
        """Serve the model directory under each name (one engine per name); returns the seconds
        until /health answered."""
        args = [str(self.command), "v2", "--host", "127.0.0.1", "--port", str(self.port)]
        for name in names:
            args += ["--model-id", self.model_dir, "--served-model-name", name]
            args += ["--engine", "torch", "--device", "cpu", "--no-model-warmup"]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "DO_NOT_TRACK": "1",
        }
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"infinity exited {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"infinity did not start in {START_TIMEOUT_S} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]
