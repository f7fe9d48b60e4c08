"""Logging to stderr in a form journald and people both read, and the masking of secrets.

Each line is an event name followed by key=value fields (`batch_written model=minilm docs=128`),
or one JSON object per line with `[logging] format = "json"`. Under systemd (JOURNAL_STREAM set)
lines carry a `<N>` syslog priority prefix instead of a timestamp, since journald adds its own.
Every URL is masked before it is printed, and a filter masks any that slipped into a message.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)", re.I
)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.I)
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***; safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_secrets(url)
    if parts.password is None:
        return mask_secrets(url)
    userinfo = f"{parts.username or ''}:***@"
    host = parts.netloc.rsplit("@", 1)[1]
    return mask_secrets(urlunsplit(parts._replace(netloc=userinfo + host)))


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs and in `password=...` connection-string fields anywhere in text."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + "***", text)


_context: contextvars.ContextVar[tuple[tuple[str, object], ...]] = contextvars.ContextVar(
    "embedkeeper_log_context", default=()
)


def log_field(name: str) -> object | None:
    """A field lines logged from this context carry (the pass's run id, say), or None."""
    return dict(_context.get()).get(name)


def set_log_fields(**fields: object) -> None:
    """Fields every line logged from this context carries (run=…, batch=…); None removes one."""
    current = dict(_context.get())
    for key, value in fields.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    _context.set(tuple(current.items()))


def event(logger: logging.Logger, level: int, name: str, **fields: object) -> None:
    """Log a stable event name with key=value fields (tests and log searches match on them)."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join([name, *(f"{k}={_value(v)}" for k, v in fields.items())])
    logger.log(level, text, extra={"event": name, "fields": fields})


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        record.context = dict(_context.get())
        return True


class _TextFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        own = getattr(record, "fields", {})
        context = "".join(
            f" {k}={_value(v)}" for k, v in getattr(record, "context", {}).items() if k not in own
        )
        line = f"{record.levelname} {record.name}: {record.getMessage()}{context}"
        if record.exc_info:
            line += "\n" + mask_secrets(self.formatException(record.exc_info))
        if self.journald:
            return f"<{_PRIORITY.get(record.levelname, 6)}>{line}"
        return f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {line}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: _jsonable(v) for k, v in getattr(record, "context", {}).items()})
        if name := getattr(record, "event", None):
            payload["event"] = name
            payload.update({k: _jsonable(v) for k, v in getattr(record, "fields", {}).items()})
        if record.exc_info:
            payload["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


def _jsonable(value: object) -> object:
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log line to stderr, once; safe to call again (the CLI does, after reading
    the config)."""
    handler = logging.StreamHandler(sys.stderr)
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter(journald))
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that chatter at INFO: keep them to warnings unless we debug.
    quiet = logging.WARNING if level != "DEBUG" else logging.DEBUG
    for name in ("pgserver", "sentence_transformers", "httpx", "alembic"):
        logging.getLogger(name).setLevel(quiet)
    # APScheduler warns "skipped: maximum number of running instances reached" whenever a pass
    # outlasts the interval: that is max_instances=1 doing its job, not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR if level != "DEBUG" else logging.DEBUG)
