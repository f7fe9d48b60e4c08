"""What the HTTP backends share: one httpx client, retries, status codes mapped to our errors.

- Transient (connection refused or reset, timeouts, 5xx, 429, an unreadable body): retried with
  exponential backoff and jitter, honouring Retry-After, up to [retry] transient_attempts; then
  BackendUnavailable, so the pipeline releases the batch with no document charged. While it waits
  after a failure that was not a 429, a probe goes out every second (`pause`), so that a server
  that comes back is used at once rather than after the rest of the wait.
- 401/403 (the key), 404 (the model or the URL), a redirect, and a 4xx whose message is about the
  model we asked for: BackendRefused, which stops the pass; retrying would not help and charging
  documents would be wrong.
- Any other 4xx (400, 413, 422): InputRejected, so the pipeline splits the batch and charges only
  the documents that cause it (the backend first checks that the server still takes a probe).
A circuit breaker sits in front: after repeated outages calls fail fast until a probe gets through.
Redirects are never followed and a response body is read up to a size cap. Every error names the
[[models]] entry, the URL, the server's message as text, and the fix.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event
from typing import Any

import httpx

from embedkeeper.backends.breaker import CircuitBreaker
from embedkeeper.backends.server_message import names_model, server_message
from embedkeeper.errors import BackendRefused, BackendUnavailable, InputRejected
from embedkeeper.logs import event
from embedkeeper.retry import Backoff

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a recovery probe goes out while we wait for a server to come back
# A probe is one short text: a server that takes longer is not back yet (and a hung one must not
# hold the wait, or a stop, for the whole read timeout).
PROBE_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
ERROR_BODY_BYTES = 65_536  # of an error response: enough for any server's message


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    max_delay_s: float = 30.0


class TryAgain(Exception):
    """One failed try that another try may fix; `retry_after_s` is the server's wish, if any."""

    def __init__(
        self, message: str, retry_after_s: float | None = None, *, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.throttled = throttled  # a 429: the server is there and asks us to slow down


class HttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        api_key: str | None,
        retry: RetryPolicy,
        label: str,
        where: str = "[[models]]",
        model: str = "",
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
        self.label = label  # "openai at http://host/v1/embeddings"
        self.where = where  # '[[models]] "name"'
        self.model = model  # the server's name for the model
        self.breaker = breaker or CircuitBreaker()
        self.last_error = "no error yet"
        self.throttled = False  # the last failure was a 429: wait, do not probe
        # Set by the backend: one cheap request that tells whether the server works again.
        self.recovery_probe: Callable[[], bool] | None = None

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
                        f"{self.where}: {self.label} is failing; circuit open, next probe in"
                        f" {wait:.1f} s ({last})",
                        retry_after_s=max(wait, 0.1),
                        retried=backoff.attempt >= self.retry.attempts,
                    )
                self.pause(max(wait, 0.05))
                continue
            try:
                body = self._post_once(url, payload, max_bytes)
            except TryAgain as exc:
                last = self.last_error = str(exc)
                self.throttled = exc.throttled
                if self.breaker.record_failure():
                    event(log, logging.WARNING, "circuit_open", backend=self.label, error=last)
                delay = backoff.next_delay_s(exc.retry_after_s)
                if delay is None:
                    raise BackendUnavailable(
                        f"{self.where}: {self.label} unavailable after {backoff.attempt} tries:"
                        f" {last}",
                        retried=True,
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
                self.pause(delay)
                continue
            except BaseException:
                self.breaker.release_probe()
                raise
            if self.breaker.record_success():
                event(log, logging.INFO, "circuit_closed", backend=self.label)
            return body

    def _post_once(
        self,
        url: str,
        payload: dict[str, Any],
        max_bytes: int,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        try:
            with self.client.stream(
                "POST", url, json=payload, timeout=timeout or self.client.timeout
            ) as response:
                status = response.status_code
                if status >= 400:
                    # An error's words come first; FastAPI servers (infinity, vLLM) echo the whole
                    # input after them, megabytes for long texts: read the start only.
                    raw = _read_start(response, ERROR_BODY_BYTES)
                else:
                    raw = _read_capped(response, max_bytes)
                retry_after = _retry_after_s(response.headers.get("retry-after"))
                location = response.headers.get("location", "")
        except httpx.TimeoutException as exc:
            raise TryAgain(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TryAgain(f"{type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            message = f"HTTP {status}: {server_message(raw)}"
            raise TryAgain(message, retry_after, throttled=status == 429)
        if 300 <= status < 400:
            raise BackendRefused(
                f"{self.where}: {self.label} answered {status} redirecting to {location!r};"
                " redirects are not followed: set url to the final address"
            )
        if 400 <= status < 500:
            raise self._client_error(status, server_message(raw))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TryAgain(f"HTTP {status} with a body that is not JSON") from exc

    def _client_error(self, status: int, message: str) -> BackendRefused | InputRejected:
        """A 4xx: about the key, the URL or the model (refused: stop, charge nobody), or about
        the input (InputRejected: the document's)."""
        said = f"HTTP {status}: {message}"
        if status in (401, 403):
            return BackendRefused(
                f"{self.where}: {self.label} refused the API key ({said}); set api_key_env or"
                " api_key_file to a key this server accepts"
            )
        if status == 404:
            return BackendRefused(
                f"{self.where}: {self.label} answered {said}; check url (the server's embeddings"
                f' path: docs/servers.md) and model "{self.model}"'
            )
        if names_model(message, self.model):
            return BackendRefused(
                f'{self.where}: {self.label} does not serve model "{self.model}" ({said}); set'
                " model to a name the server serves"
            )
        return InputRejected(said)

    def try_once(self, url: str, payload: dict[str, Any], max_bytes: int) -> bool:
        """One request, no retry and past the breaker: True if the server answered it in full.
        This is the recovery probe; on success the breaker closes."""
        try:
            self._post_once(url, payload, max_bytes, PROBE_TIMEOUT)
        except (TryAgain, BackendRefused, InputRejected):
            return False
        if self.breaker.record_success():
            event(log, logging.INFO, "circuit_closed", backend=self.label)
        return True

    def pause(self, delay_s: float, stop: Event | None = None) -> bool:
        """Wait up to `delay_s` before the next try, or until `stop` is set; True as soon as a
        recovery probe got through (the server is back, so the rest of the wait is skipped).
        After a 429 it only waits: the server is there and asked for time."""
        deadline = time.monotonic() + delay_s
        probe = None if self.throttled else self.recovery_probe
        if probe is None:
            if stop is not None:
                stop.wait(delay_s)
            else:
                time.sleep(delay_s)
            return False
        sleeper = stop or Event()  # never set: a plain sleep
        while (left := deadline - time.monotonic()) > 0:
            if sleeper.wait(min(left, POLL_S)):
                return False
            if time.monotonic() < deadline and probe():
                return True
        return False

    def close(self) -> None:
        self.client.close()


def _read_start(response: httpx.Response, size: int) -> bytes:
    """The first `size` bytes of the body; the rest is not read."""
    chunks: list[bytes] = []
    read = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        read += len(chunk)
        if read >= size:
            break
    return b"".join(chunks)[:size]


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
