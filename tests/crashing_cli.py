"""`python -m tests.crashing_cli ARGS`: the embedkeeper command, made to die (os._exit, as
kill -9 would) at a chosen point:

- a text holding the marker KILLER kills it inside the backend, the way a segfaulting model would;
- EK_CRASH_AT=after_claim | while_embedding | after_write kills it at that point of the first
  batch (after_write: the vectors are committed, the batch is not yet closed or unlocked).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import embedkeeper.app
import embedkeeper.store.pass_io.pg_store
from embedkeeper.config import ModelConfig, RetryConfig
from embedkeeper.records import Document, Embedded
from tests.fakes import ScriptedBackend

MARKER = "KILLER"
CRASH_AT = os.environ.get("EK_CRASH_AT", "")


class CrashingBackend(ScriptedBackend):
    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        if any(MARKER in d.text for d in documents) or CRASH_AT == "while_embedding":
            os._exit(137)
        return super().embed(documents)


def make_crashing_backend(model: ModelConfig, retry: RetryConfig | None = None) -> CrashingBackend:
    return CrashingBackend(dimensions=model.dimensions or 384)


def crash_after(method: str) -> None:
    original = getattr(embedkeeper.store.pass_io.pg_store.PgStore, method)

    def wrapper(self: Any, *args: Any) -> Any:
        result = original(self, *args)
        if method != "claim" or result.documents:
            os._exit(137)
        return result

    setattr(embedkeeper.store.pass_io.pg_store.PgStore, method, wrapper)


if __name__ == "__main__":
    setattr(embedkeeper.app, "make_backend", make_crashing_backend)  # noqa: B010
    if CRASH_AT == "after_claim":
        crash_after("claim")
    elif CRASH_AT == "after_write":
        crash_after("save")
    from embedkeeper.cli import main

    sys.exit(main())
