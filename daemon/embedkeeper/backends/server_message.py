"""The server's own words from an error body, as one line of text, and whether they name a model.

Servers wrap their messages differently: Ollama and text-embeddings-inference send
`{"error": "..."}`, OpenAI and infinity `{"error": {"message": ...}}`, FastAPI's own errors (a
wrong path on infinity or vLLM) `{"detail": "Not Found"}` or a list of `{"loc", "msg"}` for a
request it could not validate. A user should read the message, not a Python dict.
"""

from __future__ import annotations

import json
import re
from typing import Any

from embedkeeper.records import clean_message

LIMIT = 300

_FIRST_MESSAGE = re.compile(
    r'^\s*[\[{].*?"(?:msg|message|detail|error)"\s*:\s*"((?:[^"\\]|\\.){1,500})"', re.S
)


def server_message(raw: bytes) -> str:
    """The message of an error body, unwrapped; the body itself (cut) if it is not JSON."""
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace")
        # A JSON body cut short (its start is all that was read): its first message, if any.
        if cut := _FIRST_MESSAGE.search(text):
            return clean_message(cut.group(1), LIMIT)
        return clean_message(text[:LIMIT], LIMIT)
    return clean_message(_unwrap(data), LIMIT)


def _unwrap(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "; ".join(_unwrap(item) for item in data) or "no message"
    if not isinstance(data, dict):
        return json.dumps(data)
    for key in ("error", "detail", "message", "msg"):
        value = data.get(key)
        if value:
            text = _unwrap(value)
            location = data.get("loc")
            if key == "msg" and isinstance(location, list):
                text = ".".join(str(part) for part in location) + ": " + text
            return text
    return json.dumps(data)


def names_model(message: str, model: str) -> bool:
    """True when the message is about the model we asked for: it says "model" and names ours as a
    word of its own ("Invalid model: bge-small", "model 'nomic' not found"). Then the server
    refuses the model, not the input. A name of one or two characters is too likely to occur by
    chance to count."""
    if len(model) < 3 or not re.search(r"\bmodel", message, re.I):
        return False
    return re.search(rf"(?<![\w.:/-]){re.escape(model)}(?![\w/-])", message) is not None
