"""The error tree. Every failure a user can act on is one of these, with a message naming the fix.

    EmbedkeeperError            exit code 1; the docstring is the default message
    +-- Transient               an outage: back off and retry (retry.Backoff), charge no document
    +-- ConfigError             unknown key, bad value, missing file
    +-- UsageError              exit code 2: an argument the parser could not check
    +-- DatabaseError           the database cannot serve us
    |   +-- DatabaseUnavailable (also Transient) connection refused or dropped
    |   +-- SchemaMissing       embedkeeper's schema is absent or behind: run `embedkeeper migrate`
    |   +-- SourceNotFound      the configured table or column does not exist, or has a bad type
    |   +-- DimensionMismatch   the model's vectors do not fit what is configured or stored
    |   +-- NotIndexOwner       building or dropping an index needs the owner of the table
    |   +-- NotOwner            switching a serving view or dropping a pair needs their owner
    +-- ModelError              the model cannot be loaded or used
    +-- BackendError
        +-- BackendUnavailable  (also Transient) the server or device cannot embed now
        +-- BackendRefused      the server refuses us whatever the input (key, URL, model):
        |                       stop the pass as a configuration error, charge no document
        +-- InputRejected       this document only: charge it, spare its neighbours

The pass and the service catch Transient, never its two members one by one, so an outage of either
the database or the backend is ridden out the same way. The CLI turns an EmbedkeeperError into one
stderr line and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EmbedkeeperError(Exception):
    """embedkeeper failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class Transient(EmbedkeeperError):
    """An outage that waiting may fix; no document is charged for it."""

    def __init__(
        self,
        message: str | None = None,
        retry_after_s: float | None = None,
        *,
        retried: bool = False,
    ) -> None:
        super().__init__(message)
        # When the outage says it will be over (a circuit breaker's next probe, Retry-After).
        self.retry_after_s = retry_after_s
        # The layer that raised it already spent [retry] transient_attempts on this outage: no
        # layer above tries again, so the tries of one outage never multiply.
        self.retried = retried


class ConfigError(EmbedkeeperError):
    """The configuration is invalid."""


class UsageError(EmbedkeeperError):
    """The command line is invalid."""

    exit_code = 2


class DatabaseError(EmbedkeeperError):
    """The database cannot be used."""


class DatabaseUnavailable(DatabaseError, Transient):
    """The database cannot be reached; check [database] url or EMBEDKEEPER_DATABASE_URL."""


class SchemaMissing(DatabaseError):
    """embedkeeper's schema is missing or out of date; run `embedkeeper migrate`."""


class SourceNotFound(DatabaseError):
    """The source table or column does not exist; check the [source] section."""


class DimensionMismatch(DatabaseError):
    """The model's dimensions do not match; check [[models]] dimensions."""


class NotIndexOwner(DatabaseError):
    """A pair's vector index needs the owner of its chunks table; run this as the role that
    migrated."""


class NotOwner(DatabaseError):
    """This needs the owner of schema embedkeeper's views and tables; run it as the role that
    ran `embedkeeper migrate`."""


class ModelError(EmbedkeeperError):
    """The model cannot be loaded; check [[models]] model."""


class BackendError(EmbedkeeperError):
    """The embedding backend failed."""


class BackendUnavailable(BackendError, Transient):
    """The embedding backend is unavailable for now; no document is charged."""


class BackendRefused(BackendError):
    """The embedding server refuses every request, whatever the input; check [[models]] url,
    model and the API key. No document is charged."""


class InputRejected(BackendError):
    """The backend rejected this document."""
