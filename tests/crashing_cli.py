"""`python -m tests.crashing_cli ARGS`: the embedkeeper command with a backend that kills the
process (os._exit) when a text holds the marker KILLER, the way a segfaulting model would."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import daemon.startup
from daemon.config import ModelConfig, RetryConfig
from daemon.documents import Document, Embedded
from tests.fakes import ScriptedBackend

MARKER = "KILLER"


class CrashingBackend(ScriptedBackend):
    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        if any(MARKER in d.text for d in documents):
            os._exit(137)
        return super().embed(documents)


def make_crashing_backend(model: ModelConfig, retry: RetryConfig | None = None) -> CrashingBackend:
    return CrashingBackend(dimensions=model.dimensions or 384)


if __name__ == "__main__":
    setattr(daemon.startup, "make_backend", make_crashing_backend)  # noqa: B010
    from daemon.cli import main

    sys.exit(main())
