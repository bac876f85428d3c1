"""The error tree. Raise the narrowest class, with fields; never decide by message text."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SoarError(Exception):
    """Root of every error soar raises on purpose."""


class ConfigError(SoarError):
    """Settings that cannot be used (bad file, bad value, missing key material)."""


class AccessDenied(SoarError):
    """The caller is not allowed to do this."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a playbook, positioned for an editor (line and col are 1-based)."""

    file: str
    line: int
    col: int
    message: str
    code: str = "playbook"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PlaybookError(SoarError):
    """A playbook that cannot be loaded; carries every diagnostic found, not only the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class ExpressionError(SoarError):
    """An expression or template that does not compile or cannot be evaluated.

    `offset` and `length` are character positions inside the expression's own source text;
    the playbook loader turns them into file positions.
    """

    def __init__(self, message: str, *, offset: int = 0, length: int = 0) -> None:
        self.message = message
        self.offset = offset
        self.length = length
        super().__init__(message)


class EvaluationError(ExpressionError):
    """An expression that compiled but failed on the data it was given (missing key, bad type)."""


class RejectionCode(StrEnum):
    """Why a message was refused as an alert. Stable: dead-letter consumers match on these."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    DUPLICATE_KEY = "duplicate_key"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    UNKNOWN_FORMAT = "unknown_format"
    INVALID_FIELD = "invalid_field"
    MISSING_FIELD = "missing_field"


class AlertRejected(SoarError):
    """A message that is not a usable alert. `field` names the offending field when there is one."""

    def __init__(
        self,
        code: RejectionCode,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.index = index
        super().__init__(f"{code}: {message}")


class BadInputs(SoarError):
    """A run was asked for with inputs its playbook does not accept (missing, unknown, typed)."""


class StoreError(SoarError):
    """The store failed or refused a write."""


class ConflictError(StoreError):
    """A lease is held elsewhere, or a transition was already recorded."""


class LeaseLost(ConflictError):
    """The write was fenced off: another worker holds the run now (it took the run over, or
    recorded it first). Nothing of the change was written; this worker must stop driving it."""


class ApprovalChanged(ConflictError):
    """A decision named a digest of what was asked that no longer matches the pending approval:
    what the person saw (`given`) is not what would be approved (`pending`; None when the
    approval records no digest). Nothing was recorded; show the approval again."""

    def __init__(self, run_id: str, step: str, *, given: str, pending: str | None) -> None:
        self.run_id = run_id
        self.step = step
        self.given = given
        self.pending = pending
        super().__init__(
            f"the approval at step {step!r} of run {run_id} asks something else now "
            f"(digest {pending or 'none'}, not {given})"
        )


class ConnectorError(SoarError):
    """A connector or one of its actions failed."""


class ActionFailed(ConnectorError):
    """An action failed; `retryable` tells the engine whether another attempt may succeed.

    `retry_after` (seconds) is the system's own word on when to come back, such as a 429's
    Retry-After: the engine's next attempt waits at least that long, as a durable timer, instead
    of the action sleeping through its own timeout."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after if retry_after is None else max(retry_after, 0.0)
        self.status = status  # the remote system's own status code, when it gave one
        super().__init__(message)


class SecretMissing(ConnectorError):
    """An action needs a secret that no secret source holds."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"secret {name!r} is not set")


class AuditError(SoarError):
    """The audit log cannot be written or read."""


class ChainBroken(AuditError):
    """Verification failed; `first_bad` is the sequence number of the first record that fails."""

    def __init__(self, first_bad: int, reason: str) -> None:
        self.first_bad = first_bad
        self.reason = reason
        super().__init__(f"record {first_bad}: {reason}")
