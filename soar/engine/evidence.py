"""The audit events of runs: what each transition tells an auditor, with secrets redacted.

Events ride in the same store write as the transition they describe (see `RunExecutor._commit`),
so the log and the runs never disagree. Bodies are canonical JSON (docs/audit.md); a step's
output is recorded as a digest, never as its value.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import JsonValue

from soar.audit.canonical import canonical, is_plain, plain_canonical
from soar.connectors.action import ActionSpec
from soar.models import Alert
from soar.models.audit import AuditEvent, AuditKind
from soar.models.run import Run, StepState, StepStatus, TransitionKind

REDACTED: Final = "[redacted]"
ENGINE: Final = "engine"
"""The actor of everything the engine decides by itself."""

_SENSITIVE_KEY: Final = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|cookie|private[_-]?key|"
    r"credential|session[_-]?id",
    re.IGNORECASE,
)
_SHORTEST_SECRET: Final = 4  # shorter values would redact ordinary words

_STEP_KINDS: Final = {
    TransitionKind.STEP_STARTED: AuditKind.STEP_STARTED,
    TransitionKind.STEP_SUCCEEDED: AuditKind.STEP_FINISHED,
    TransitionKind.STEP_FAILED: AuditKind.STEP_FINISHED,
    TransitionKind.STEP_SKIPPED: AuditKind.STEP_FINISHED,
    TransitionKind.STEP_COMPENSATED: AuditKind.STEP_COMPENSATED,
    TransitionKind.COMPENSATION_FAILED: AuditKind.STEP_COMPENSATED,
    TransitionKind.RUN_ABORT_REQUESTED: AuditKind.RUN_ABORT_REQUESTED,
}
_SUCCEEDED: Final = TransitionKind.STEP_SUCCEEDED
_RUN_KINDS: Final = {
    TransitionKind.RUN_FINISHED: AuditKind.RUN_FINISHED,
    TransitionKind.APPROVAL_DECIDED: AuditKind.APPROVAL_DECIDED,
    TransitionKind.RUN_RETRIED: AuditKind.RUN_RETRIED,
}


class SecretsInLogs(logging.Filter):
    """Hides configured secret values in the log records of actions (which format whatever a
    connector hands them). One per process: a worker's engines share its secrets."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            hidden = message
            for secret in self.secrets:
                hidden = hidden.replace(secret, REDACTED)
            if hidden != message:
                record.msg, record.args = hidden, None
        return True


LOG_FILTER: Final = SecretsInLogs()


_NO_OFFSET: Final = timedelta(0)
_second: tuple[int, str] = (-1, "")
"""The last whole second `rfc3339` formatted (POSIX seconds, `YYYY-MM-DDTHH:MM:SS`); one
tuple, replaced whole, so threads sharing it see one or the other."""


@functools.lru_cache(maxsize=4096)
def _is_sensitive(key: str) -> bool:
    return _SENSITIVE_KEY.search(key) is not None


def rfc3339(moment: datetime) -> str:
    """UTC with six fraction digits and `Z`, as every time in the log is written."""
    if moment.tzinfo is not UTC and moment.utcoffset() != _NO_OFFSET:
        moment = moment.astimezone(UTC)
    global _second  # a one-entry cache: every record of a second shares it
    whole = math.floor(moment.timestamp())
    second = _second
    if second[0] != whole:
        second = _second = (whole, moment.isoformat()[:19])
    return f"{second[1]}.{moment.microsecond:06d}Z"


def digest(value: JsonValue) -> str:
    """`sha256:` and the hex SHA-256 of the value's canonical JSON."""
    return "sha256:" + hashlib.sha256(_encode(value)).hexdigest()


def trace_id(run: Run) -> str | None:
    """The trace id out of the run's `traceparent`."""
    return run.trace[3:35] if run.trace else None


class Evidence:
    """Makes the audit events of one engine's runs (or none, when auditing is off)."""

    def __init__(self, *, enabled: bool = True, secrets: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True
        )
        LOG_FILTER.secrets.update(self._secrets)

    def hide_secrets(self, value: JsonValue) -> JsonValue:
        """`value` with every configured secret value replaced (keys are left alone: an output
        may rightly carry a field called `token`)."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.hide_secrets(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.hide_secrets(v) for v in value]
        return value

    def redact(self, value: JsonValue) -> JsonValue:
        """`value` with every secret value and every value under a secret-looking key hidden."""
        if not value or (not self._secrets and not isinstance(value, dict | list)):
            return value
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if _is_sensitive(k) and v is not None else self.redact(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        return value

    def step(
        self,
        run: Run,
        kind: TransitionKind,
        state: StepState,
        spec: ActionSpec | None,
        detail: dict[str, JsonValue],
        *,
        actor: str = ENGINE,
        announce: bool = False,
    ) -> AuditEvent | None:
        """The event of one step transition, or None for those an auditor need not see.

        With `announce`, an outcome also carries the attempt's idempotency key and inputs: its
        start was written in the same transaction and has no record of its own.
        """
        audit_kind = _STEP_KINDS.get(kind)
        if not self.enabled or audit_kind is None or run.dry_run:
            return None
        at = state.finished_at or state.started_at or run.updated_at
        body = self._base(run, audit_kind, at, actor)
        body["step"] = state.key
        target: str | None = None
        action: str | None = None
        inputs = state.inputs
        if spec is not None:
            action = body["action"] = f"{spec.connector}.{spec.name}"
            field = spec.target_field
            value = inputs.get(field) if field and isinstance(inputs, dict) else None
            if value is not None:
                target = str(value)
                body["target"] = {"kind": spec.target._value_, "value": self.redact(target)}
        if state.attempt:
            body["attempt"] = state.attempt
        # a body is made here of ASCII keys and safe scalars but for the inputs and an
        # approval's decision: only those need checking before the fast canonical path
        plain = True
        if audit_kind is AuditKind.STEP_STARTED or announce:
            body["idempotency_key"] = state.idempotency_key
            inputs = body["inputs"] = self.redact(inputs)
            plain = not inputs or is_plain(inputs)
        if audit_kind is AuditKind.STEP_STARTED:
            pass  # the start's whole record is above
        elif audit_kind is AuditKind.RUN_ABORT_REQUESTED:
            body["reason"] = reason = self.redact(detail.get("reason"))
            plain = plain and is_plain(reason)
        else:
            body["outcome"] = "succeeded" if kind is _SUCCEEDED else _outcome(kind, state)
            if state.error is not None:
                body["error"] = self.redact(state.error)
            if kind is _SUCCEEDED:
                output = state.output
                body["output_digest"] = digest(output)
                if spec is None and isinstance(output, dict) and "timed_out" in output:
                    # an approval: who decided, or that nobody did and the default held
                    for name in ("approved", "timed_out", "decided_by"):
                        body[name] = self.redact(output.get(name))
                    plain = plain and is_plain(body["decided_by"])
            if "retry_at" in detail:
                body["retry_at"] = detail["retry_at"]
        return AuditEvent(
            kind=audit_kind,
            time=at,
            actor=actor,
            body=plain_canonical(body) if plain else _encode(body),
            run_id=run.id,
            step=state.key,
            action=action,
            target=target,
            trace_id=body.get("trace_id"),  # type: ignore[arg-type] # a str, set by _base
        )

    def run(
        self,
        run: Run,
        kind: TransitionKind,
        at: datetime,
        step: str | None,
        data: JsonValue,
        *,
        actor: str = ENGINE,
    ) -> AuditEvent | None:
        """The event of a run-level transition (start, end, approval, retry), or None."""
        if not self.enabled or run.dry_run:
            return None
        if kind is TransitionKind.RUN_STARTED:
            audit_kind = AuditKind.RUN_STARTED
        else:
            found = _RUN_KINDS.get(kind)
            if found is None:
                return None
            audit_kind = found
        detail = data if isinstance(data, dict) else {}
        if audit_kind is AuditKind.APPROVAL_DECIDED:
            actor = str(detail.get("by") or actor)
        body = self._base(run, audit_kind, at, actor)
        if step is not None:
            body["step"] = step
        if audit_kind is AuditKind.RUN_STARTED:
            body["trigger"] = run.trigger._value_
            body["inputs"] = self.redact(run.inputs)
            if isinstance(run.alert, dict) and isinstance(run.alert.get("id"), str):
                body["alert_id"] = run.alert["id"]
            if run.parent_run is not None:
                body["parent_run"] = run.parent_run
        elif audit_kind is AuditKind.RUN_FINISHED:
            body["status"] = detail.get("status")
            if detail.get("error") is not None:
                body["error"] = self.redact(detail.get("error"))
        elif audit_kind is AuditKind.APPROVAL_DECIDED:
            body["approved"] = bool(detail.get("approved"))
            body["comment"] = self.redact(detail.get("comment"))
        else:
            body["detail"] = self.redact(data)
        alert_id = body.get("alert_id")
        return _event(
            audit_kind,
            at,
            body,
            run,
            step,
            None,
            None,
            alert_id=alert_id if isinstance(alert_id, str) else None,
            plain=is_plain(body.get("inputs")) and is_plain(body.get("detail")),
        )

    def alert_accepted(
        self,
        alert: Alert,
        at: datetime,
        runs: list[str],
        *,
        trace_id: str | None = None,
        actor: str = ENGINE,
    ) -> AuditEvent | None:
        """An alert soar took in, and the runs it started or joined."""
        if not self.enabled:
            return None
        body: dict[str, JsonValue] = {
            "kind": AuditKind.ALERT_ACCEPTED._value_,
            "time": rfc3339(at),
            "actor": actor,
            "alert_id": alert.id,
            "source": alert.source,
            "title": self.redact(alert.title),
            "severity": alert.severity._value_,
            "runs": list(runs),
        }
        if trace_id is not None:
            body["trace_id"] = trace_id
        return AuditEvent(
            kind=AuditKind.ALERT_ACCEPTED,
            time=at,
            actor=actor,
            body=_encode(body),
            alert_id=alert.id,
            trace_id=trace_id,
        )

    def alert_rejected(
        self,
        payload: bytes,
        at: datetime,
        *,
        source: str,
        reason: str,
        message: str,
        trace_id: str | None = None,
        actor: str = ENGINE,
    ) -> AuditEvent | None:
        """A message soar could not take in and dead-lettered: where it came from, why, and the
        digest of its bytes (never the bytes: they are attacker-chosen and may hold anything).

        Args:
            source: where the message came from, e.g. `kafka:alerts/3@1042` or `http:10.0.0.5`.
            reason: the rejection's code (`not_json`, `unknown_format`, ...).
            message: the human-readable reason (redacted here).
        """
        return self._standalone(
            AuditKind.ALERT_REJECTED,
            at,
            actor,
            {
                "source": source,
                "reason": reason,
                "message": self.redact(message),
                "payload_digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                "payload_bytes": len(payload),
            },
            trace_id=trace_id,
        )

    def playbook_saved(
        self,
        playbook_id: str,
        version: int,
        playbook_digest: str,
        at: datetime,
        *,
        author: str,
        previous: tuple[int, str] | None = None,
    ) -> AuditEvent | None:
        """A playbook version was saved: `playbook.created` for its first version, else
        `playbook.changed` naming the version and digest it replaces. The author is the actor."""
        fields: dict[str, JsonValue] = {
            "playbook": playbook_id,
            "version": version,
            "digest": playbook_digest,
        }
        kind = AuditKind.PLAYBOOK_CREATED
        if previous is not None:
            kind = AuditKind.PLAYBOOK_CHANGED
            fields["previous_version"], fields["previous_digest"] = previous
        return self._standalone(kind, at, author, fields)

    def playbook_rolled_out(
        self,
        playbook_id: str,
        version: int,
        playbook_digest: str,
        at: datetime,
        *,
        actor: str,
        share: int,
        mode: str,
    ) -> AuditEvent | None:
        """A version now takes `share` percent of its matching alerts, `mode` `live` or
        `dry_run` (100 and live is a full roll-out; 0 withdraws it)."""
        return self._standalone(
            AuditKind.PLAYBOOK_ROLLED_OUT,
            at,
            actor,
            {
                "playbook": playbook_id,
                "version": version,
                "digest": playbook_digest,
                "share": share,
                "mode": mode,
            },
        )

    def api_login(
        self, at: datetime, *, actor: str, method: str, client: str, roles: list[str]
    ) -> AuditEvent | None:
        """Someone signed in to the API (`method`: `token`, `password`, ...) from `client`."""
        return self._standalone(
            AuditKind.API_LOGIN,
            at,
            actor,
            {"method": method, "client": client, "roles": [*sorted(roles)]},
        )

    def api_denied(
        self, at: datetime, *, actor: str, route: str, reason: str, client: str
    ) -> AuditEvent | None:
        """A request the API refused (`actor` `anonymous` when nobody could be told apart):
        `route` as `METHOD /path`, and why (`no_token`, `bad_token`, `role`, ...)."""
        return self._standalone(
            AuditKind.API_DENIED,
            at,
            actor,
            {"route": self.redact(route), "reason": reason, "client": client},
        )

    def api_request(
        self, at: datetime, *, actor: str, route: str, via: str, token: str, client: str
    ) -> AuditEvent | None:
        """A token (or a console session, `via`) changed something: every such use is on
        record, besides what the change itself records (a decision, an abort, an alert)."""
        return self._standalone(
            AuditKind.API_REQUEST,
            at,
            actor,
            {"route": self.redact(route), "via": via, "token": token, "client": client},
        )

    def _standalone(
        self,
        kind: AuditKind,
        at: datetime,
        actor: str,
        fields: dict[str, JsonValue],
        *,
        trace_id: str | None = None,
    ) -> AuditEvent | None:
        """An event that belongs to no run."""
        if not self.enabled:
            return None
        body: dict[str, JsonValue] = {
            "kind": kind._value_,
            "time": rfc3339(at),
            "actor": actor,
            **fields,
        }
        if trace_id is not None:
            body["trace_id"] = trace_id
        return AuditEvent(kind=kind, time=at, actor=actor, body=_encode(body), trace_id=trace_id)

    def _base(self, run: Run, kind: AuditKind, at: datetime, actor: str) -> dict[str, JsonValue]:
        body: dict[str, JsonValue] = {
            "kind": kind._value_,
            "time": rfc3339(at),
            "actor": actor,
            "run_id": run.id,
            "playbook": run.playbook_id,
            "version": run.playbook_version,
        }
        trace = trace_id(run)
        if trace is not None:
            body["trace_id"] = trace
        return body


def _outcome(kind: TransitionKind, state: StepState) -> str:
    if kind is TransitionKind.STEP_FAILED:
        return "retrying" if state.status is StepStatus.RUNNING else "failed"
    if kind is TransitionKind.COMPENSATION_FAILED:
        return "compensation_failed"
    return state.status._value_


def _event(
    kind: AuditKind,
    time: datetime,
    body: dict[str, JsonValue],
    run: Run,
    step: str | None,
    spec: ActionSpec | None,
    target: str | None,
    *,
    alert_id: str | None = None,
    plain: bool = False,
) -> AuditEvent:
    return AuditEvent(
        kind=kind,
        time=time,
        actor=str(body["actor"]),
        body=plain_canonical(body) if plain else _encode(body),
        run_id=run.id,
        alert_id=alert_id,
        step=step,
        action=spec.qualified_name if spec is not None else None,
        target=target,
        trace_id=body.get("trace_id"),  # type: ignore[arg-type] # a str, set by _base
    )


def _encode(value: JsonValue) -> bytes:
    try:
        return canonical(value)
    except ValueError:  # rare values canonical JSON has no number for: written as text
        return canonical(_storable(value))


_SAFE_INTEGER: Final = 2**53


def _storable(value: JsonValue) -> JsonValue:
    """Integers too large for a JSON number in every reader, NaN and infinities become text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if -_SAFE_INTEGER < value < _SAFE_INTEGER else str(value)
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return [_storable(v) for v in value]
