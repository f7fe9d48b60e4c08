"""What a server's 4xx means, table-tested: the server's words unwrapped from each server's body
shape, and which statuses refuse the configuration (stop, charge nobody) and which reject the
input (the document's). HTTP through httpx.MockTransport; no server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from embedkeeper.backends._http import HttpClient, RetryPolicy
from embedkeeper.backends.server_message import names_model, server_message
from embedkeeper.chunking.tokenizer import window_of
from embedkeeper.errors import BackendRefused, InputRejected, ModelError


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"error": "model 'x' not found"}, "model 'x' not found"),  # Ollama, TEI
        ({"error": {"message": "Invalid model: y", "type": None, "code": 400}}, "Invalid model: y"),
        ({"detail": "Not Found"}, "Not Found"),  # FastAPI (infinity, vLLM) for a wrong path
        (
            {"detail": [{"loc": ["body", "input"], "msg": "Field required", "type": "missing"}]},
            "body.input: Field required",
        ),
        ({"object": "error", "message": "too long", "code": 400}, "too long"),  # vLLM
        ({"unexpected": 1}, '{"unexpected": 1}'),
    ],
)
def test_the_servers_message_is_text(body, text):
    assert server_message(json.dumps(body).encode()) == text


def test_a_body_that_is_not_json_is_shown_cut():
    assert server_message(b"<html>502 Bad Gateway</html>" + b"x" * 1000).startswith("<html>502")
    assert len(server_message(b"y" * 1000)) == 300


@pytest.mark.parametrize(
    ("message", "model", "named"),
    [
        ("Invalid model: Engine for model name `minilm` not found.", "minilm", True),
        ('model "nomic-embed-text" not found, try pulling it first', "nomic-embed-text", True),
        ("The model `bge` does not exist.", "bge", True),
        ("input length exceeds maximum context length", "minilm", False),
        ("This model's maximum context length is 512 tokens", "minilm", False),
        ("minilm: input too long", "minilm", False),  # names it, but not about the model
        ("model minilm-v2 not found", "minilm", False),  # another name that starts alike
        ("model m not found", "m", False),  # too short to tell
    ],
)
def test_a_message_about_the_model_we_asked_for(message, model, named):
    assert names_model(message, model) is named


def client(status: int, body: object, headers: dict[str, str] | None = None) -> HttpClient:
    http = HttpClient(
        "http://server/v1/embeddings",
        timeout_s=5,
        api_key=None,
        retry=RetryPolicy(attempts=1, max_delay_s=0.1),
        label="openai at http://server/v1/embeddings",
        where='[[models]] "mini"',
        model="minilm",
    )
    reply = httpx.Response(status, json=body, headers=headers)
    http.client = httpx.Client(transport=httpx.MockTransport(lambda request: reply))
    return http


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key"}},
            BackendRefused,
            '[[models]] "mini": openai at http://server/v1/embeddings refused the API key (HTTP'
            " 401: Incorrect API key); set api_key_env or api_key_file to a key this server"
            " accepts",
        ),
        (
            404,
            {"detail": "Not Found"},
            BackendRefused,
            '[[models]] "mini": openai at http://server/v1/embeddings answered HTTP 404: Not'
            " Found; check url (the server's embeddings path: docs/servers.md) and model"
            ' "minilm"',
        ),
        (
            400,
            {"error": {"message": "Invalid model: Engine for model name `minilm` not found."}},
            BackendRefused,
            '[[models]] "mini": openai at http://server/v1/embeddings does not serve model'
            ' "minilm" (HTTP 400: Invalid model: Engine for model name `minilm` not found.); set'
            " model to a name the server serves",
        ),
        (400, {"error": "input too long"}, InputRejected, "HTTP 400: input too long"),
        (413, {"detail": "Payload Too Large"}, InputRejected, "HTTP 413: Payload Too Large"),
        (422, {"detail": [{"msg": "bad", "loc": ["body"]}]}, InputRejected, "HTTP 422: body: bad"),
    ],
)
def test_a_4xx_refuses_the_configuration_or_rejects_the_input(status, body, error, message):
    with pytest.raises(error) as raised:
        client(status, body).post_json("http://server/v1/embeddings", {}, 10_000)
    assert str(raised.value) == message


def test_a_redirect_is_refused_naming_where_it_went():
    http = client(307, {}, {"Location": "http://elsewhere/"})
    with pytest.raises(BackendRefused, match="redirecting to 'http://elsewhere/'; redirects"):
        http.post_json("http://server/v1/embeddings", {}, 10_000)


def test_the_window_is_read_from_the_model_directory(tmp_path: Path):
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    assert window_of(tmp_path, "w") == 512
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    assert window_of(tmp_path, "w") == 256  # what sentence-transformers (and infinity) cut at
    (tmp_path / "sentence_bert_config.json").unlink()
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 1e30}')
    with pytest.raises(ModelError, match="set max_tokens"):
        window_of(tmp_path, '[[models]] "m"')


def test_an_error_that_echoes_megabytes_of_input_is_read_from_its_start():
    """infinity answers an input over 122,880 characters with a 422 that repeats the input: the
    error is the input's (the document's), not an outage, and its words are found."""
    body = {
        "detail": [
            {
                "type": "string_too_long",
                "loc": ["body", "input", 0],
                "msg": "String should have at most 122880 characters",
                "input": "binutils (2.40-2) unstable; " * 200_000,
            }
        ]
    }
    with pytest.raises(InputRejected) as raised:
        client(422, body).post_json("http://server/v1/embeddings", {}, 10_000)
    assert str(raised.value) == "HTTP 422: String should have at most 122880 characters"


def test_a_server_is_sent_what_its_window_can_hold_and_never_over_infinitys_limit():
    from embedkeeper.backends.remote import text_budget
    from embedkeeper.config import ModelConfig

    model = ModelConfig(name="mini", backend="openai", model="m", prefix="p: ")
    assert text_budget(model, 256) == len("p: ") + 256 * 32
    assert text_budget(model, None) < 122_880
