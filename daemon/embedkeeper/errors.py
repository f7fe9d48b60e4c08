"""The error tree. Every failure a user can act on is one of these, with a message naming the fix.

    EmbedkeeperError            exit code 1; the docstring is the default message
    +-- ConfigError             unknown key, bad value, missing file
    +-- UsageError              exit code 2: an argument the parser could not check
    +-- DatabaseError           the database cannot serve us
    |   +-- DatabaseUnavailable transient: connection refused or dropped; retried with backoff
    |   +-- SchemaMissing       embedkeeper's schema is absent or behind: run `embedkeeper migrate`
    |   +-- SourceNotFound      the configured table or column does not exist, or has a bad type
    |   +-- DimensionMismatch   the model's vectors do not fit what is configured or stored
    |   +-- NotIndexOwner       building or dropping an index needs the owner of the table
    +-- ModelError              the model cannot be loaded or used
    +-- BackendError
        +-- BackendUnavailable  transient: back off and retry, charge no document
        +-- InputRejected       this document only: charge it, spare its neighbours

The CLI turns an EmbedkeeperError into one stderr line and its exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class EmbedkeeperError(Exception):
    """embedkeeper failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(EmbedkeeperError):
    """The configuration is invalid."""


class UsageError(EmbedkeeperError):
    """The command line is invalid."""

    exit_code = 2


class DatabaseError(EmbedkeeperError):
    """The database cannot be used."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached; check [database] url or EMBEDKEEPER_DATABASE_URL."""


class SchemaMissing(DatabaseError):
    """embedkeeper's schema is missing or out of date; run `embedkeeper migrate`."""


class SourceNotFound(DatabaseError):
    """The source table or column does not exist; check the [source] section."""


class DimensionMismatch(DatabaseError):
    """The model's dimensions do not match; check [[models]] dimensions."""


class NotIndexOwner(DatabaseError):
    """Indexes on embedkeeper.embeddings need its owner; run this as the role that migrated."""


class ModelError(EmbedkeeperError):
    """The model cannot be loaded; check [[models]] model."""


class BackendError(EmbedkeeperError):
    """The embedding backend failed."""


class BackendUnavailable(BackendError):
    """The embedding backend is unavailable for now; no document is charged."""

    def __init__(self, message: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # when the circuit breaker will let a probe through


class InputRejected(BackendError):
    """The backend rejected this document."""
