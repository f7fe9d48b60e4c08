"""A stand-in embedding server on loopback: Ollama's POST /api/embed and OpenAI's
POST /v1/embeddings (and POST /embeddings, infinity's default path) with their exact JSON, real
vectors from the local MiniLM, and faults on demand.

Some faults play what the real infinity-emb 0.0.78 does: a 400 naming the model for a model it
does not serve (`serves`), `usage` counted in characters (`char_usage`), and FastAPI's
`{"detail": ...}` body for a path it does not have.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


@dataclass
class Faults:
    unavailable_first: int = 0  # answer 503 to the first N requests
    rate_limited_first: int = 0  # answer 429 with Retry-After to the first N requests
    retry_after: str = "1"
    hang_first: int = 0  # sleep `hang_s` before answering the first N requests
    hang_s: float = 0.0
    poison: str | None = None  # 400 for a request holding an input with this marker
    wrong_dims: str | None = None  # cut the vector of an input with this marker to 17 numbers
    nan: str | None = None  # NaN in the vector of an input with this marker
    drop_one_first: int = 0  # return one vector fewer than inputs, the first N requests
    redirect: bool = False  # answer 307 to another address
    huge_first: int = 0  # pad the body past any sane size, the first N requests
    shuffle: bool = True  # OpenAI: return `data` out of order (clients must use `index`)
    serves: list[str] | None = None  # the only model names served (None: any), as infinity
    answers_as: str | None = None  # the `model` the response names, whatever was asked
    char_usage: bool = False  # usage in characters, as infinity counts by default
    refuse_all: str | None = None  # 400 with this FastAPI `detail` for any request at all


@dataclass
class Calls:
    requests: int = 0
    inputs: list[list[str]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each 200


class StandIn:
    def __init__(self, model: Any, dimensions: int = 384) -> None:
        self.model = model
        self.dimensions = dimensions
        self.faults = Faults()
        self.calls = Calls()
        self.lock = threading.Lock()
        self.encode_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"standin": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self, name: str) -> bool:
        """Consume one unit of a counted fault."""
        with self.lock:
            left = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
            return False

    def vectors(self, texts: list[str]) -> list[list[float]]:
        with self.encode_lock:
            encoded = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        out = []
        for text, vector in zip(texts, encoded, strict=True):
            values = [float(x) for x in np.asarray(vector, dtype=np.float32)]
            if self.faults.wrong_dims and self.faults.wrong_dims in text:
                values = values[:17]
            if self.faults.nan and self.faults.nan in text:
                values[0] = float("nan")
            out.append(values)
        return out


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        s = self.standin
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with s.lock:
            s.calls.requests += 1
            s.calls.bodies.append(body)
            s.calls.authorization.append(self.headers.get("authorization"))
        if self.path not in ("/api/embed", "/v1/embeddings", "/embeddings"):
            self.reply(404, {"detail": "Not Found"})  # FastAPI's answer for an unknown path
            return
        ollama = self.path == "/api/embed"
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        with s.lock:
            s.calls.inputs.append(texts)
        if not self.fault(texts, ollama) and not self.unknown_model(body.get("model"), ollama):
            self.answer(texts, body, ollama)

    def fault(self, texts: list[str], ollama: bool) -> bool:
        """Play the injected fault, if one is due; True when it answered the request."""
        s = self.standin
        if s.faults.redirect:
            self.reply(307, {}, {"Location": "http://127.0.0.2:1/elsewhere"})
            return True
        if s.take("hang_first"):
            time.sleep(s.faults.hang_s)
        if s.take("unavailable_first"):
            self.reply(503, {"error": "model is loading"})
            return True
        if s.take("rate_limited_first"):
            self.reply(429, {"error": "slow down"}, {"Retry-After": s.faults.retry_after})
            return True
        if s.faults.refuse_all:
            self.reply(400, {"detail": s.faults.refuse_all})
            return True
        if s.faults.poison and any(s.faults.poison in t for t in texts):
            message = "input length exceeds maximum context length"
            error: Any = message
            if not ollama:
                error = {"message": message, "type": "invalid_request_error"}
            self.reply(400, {"error": error})
            return True
        return False

    def unknown_model(self, model: Any, ollama: bool) -> bool:
        """Refuse a model not served: Ollama's 404, or infinity's 400 naming the model."""
        served = self.standin.faults.serves
        if served is None or model in served:
            return False
        if ollama:
            self.reply(404, {"error": f'model "{model}" not found, try pulling it first'})
            return True
        message = (
            f"Invalid model: Engine for model name `{model}` not found. "
            f"Available model names are {served}"
        )
        self.reply(
            400,
            {"error": {"message": message, "type": None, "param": None, "code": 400}},
        )
        return True

    def answer(self, texts: list[str], body: dict[str, Any], ollama: bool) -> None:
        s = self.standin
        vectors = s.vectors(texts)
        if s.take("drop_one_first"):
            vectors = vectors[:-1]
        padding = "x" * 50_000_000 if s.take("huge_first") else None
        tokens = sum(len(t.split()) + 2 for t in texts)
        if s.faults.char_usage:
            tokens = sum(len(t) for t in texts)
        model = s.faults.answers_as or body.get("model")
        if ollama:
            payload: dict[str, Any] = {
                "model": model,
                "embeddings": vectors,
                "prompt_eval_count": tokens,
            }
        else:
            data = [
                {"object": "embedding", "index": i, "embedding": self.encode(v, body)}
                for i, v in enumerate(vectors)
            ]
            if s.faults.shuffle:
                random.Random(len(data)).shuffle(data)
            payload = {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        if padding:
            payload["padding"] = padding
        with s.lock:
            s.calls.answered_at.append(time.monotonic())
        self.reply(200, payload)

    @staticmethod
    def encode(vector: list[float], body: dict[str, Any]) -> Any:
        if body.get("encoding_format") == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return vector

    def reply(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
