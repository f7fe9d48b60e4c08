"""What the HTTP backends share: one httpx client, retries, status codes mapped to our errors.

- Transient (connection refused or reset, timeouts, 5xx, 429, an unreadable body): retried with
  exponential backoff and jitter, honouring Retry-After, up to [retry] transient_attempts; then
  BackendUnavailable, so the pipeline releases the batch with no document charged.
- A 4xx about the input (400, 413, 422): InputRejected, so the pipeline splits the batch and
  charges only the documents that cause it.
- 401/403 (the key), 404 (the model or the URL), a redirect: a BackendError that stops the pass;
  retrying would not help and charging documents would be wrong.
A circuit breaker sits in front: after repeated outages calls fail fast until a probe gets through.
Redirects are never followed and a response body is read up to a size cap.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from embedkeeper.backends.breaker import CircuitBreaker
from embedkeeper.errors import BackendError, BackendUnavailable, InputRejected
from embedkeeper.logs import event
from embedkeeper.records import clean_message
from embedkeeper.retry import Backoff

log = logging.getLogger(__name__)

INPUT_STATUSES = {400, 413, 422}
FATAL_STATUSES = {401: "refused the API key", 403: "refused the API key", 404: "does not know"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    max_delay_s: float = 30.0


class TryAgain(Exception):
    """One failed try that another try may fix; `retry_after_s` is the server's wish, if any."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        api_key: str | None,
        retry: RetryPolicy,
        label: str,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        headers = {"User-Agent": "embedkeeper", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            follow_redirects=False,
            trust_env=False,  # no proxy or netrc credentials picked up from the environment
        )
        self.base_url = base_url
        self.retry = retry
        self.label = label
        self.breaker = breaker or CircuitBreaker()
        self.last_error = "no error yet"

    def post_json(self, url: str, payload: dict[str, Any], max_bytes: int) -> Any:
        """POST and return the decoded JSON body, retrying transient failures."""
        last = self.last_error
        backoff = Backoff(self.retry.attempts, self.retry.max_delay_s)
        while True:
            wait = self.breaker.allow()
            if wait is not None:
                # Open circuit: wait for the probe if that fits in our budget, else fail fast.
                if wait > self.retry.max_delay_s or backoff.attempt >= self.retry.attempts:
                    raise BackendUnavailable(
                        f"{self.label} is failing; circuit open, next probe in {wait:.1f} s"
                        f" ({last})",
                        retry_after_s=max(wait, 0.1),
                    )
                time.sleep(max(wait, 0.05))
                continue
            try:
                body = self._post_once(url, payload, max_bytes)
            except TryAgain as exc:
                last = self.last_error = str(exc)
                if self.breaker.record_failure():
                    event(log, logging.WARNING, "circuit_open", backend=self.label, error=last)
                delay = backoff.next_delay_s(exc.retry_after_s)
                if delay is None:
                    raise BackendUnavailable(
                        f"{self.label} unavailable after {backoff.attempt} tries: {last}"
                    ) from exc
                delay = min(delay, self.retry.max_delay_s)  # a request never waits past its budget
                event(
                    log,
                    logging.WARNING,
                    "backend_retry",
                    backend=self.label,
                    error=last,
                    attempt=backoff.attempt,
                    retry_in_s=round(delay, 2),
                )
                time.sleep(delay)
                continue
            except BaseException:
                self.breaker.release_probe()
                raise
            if self.breaker.record_success():
                event(log, logging.INFO, "circuit_closed", backend=self.label)
            return body

    def _post_once(self, url: str, payload: dict[str, Any], max_bytes: int) -> Any:
        try:
            with self.client.stream("POST", url, json=payload) as response:
                status = response.status_code
                raw = _read_capped(response, max_bytes)
                retry_after = _retry_after_s(response.headers.get("retry-after"))
                location = response.headers.get("location", "")
        except httpx.TimeoutException as exc:
            raise TryAgain(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TryAgain(f"{type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            raise TryAgain(f"HTTP {status}: {_error_text(raw)}", retry_after)
        if 300 <= status < 400:
            raise BackendError(
                f"{self.label} answered {status} redirecting to {location!r}; redirects are not "
                "followed: set url to the final address"
            )
        if status in FATAL_STATUSES:
            raise BackendError(
                f"{self.label} {FATAL_STATUSES[status]} (HTTP {status}: {_error_text(raw)}); "
                "check url, model and api_key_env"
            )
        if status in INPUT_STATUSES or 400 <= status < 500:
            raise InputRejected(f"HTTP {status}: {_error_text(raw)}")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TryAgain(f"HTTP {status} with a body that is not JSON") from exc

    def close(self) -> None:
        self.client.close()


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TryAgain(f"response larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _error_text(raw: bytes) -> str:
    """The server's own words: Ollama's {"error": "..."} or OpenAI's {"error": {"message": ...}}."""
    try:
        data = json.loads(raw)
    except ValueError:
        return clean_message(raw[:300].decode("utf-8", "replace"), 300)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return clean_message(str(error if error else data), 300)
