"""Runs, steps, transitions and timers as flat rows, and back: one encoding for every backend.

Both `MemoryStore` and `SqliteStore` keep these rows, so a value that SQLite would refuse or
change (a naive datetime, a set, a tuple) is refused or changed the same way by both.
Datetimes are integer microseconds since the Unix epoch (UTC); JSON is compact text; None is NULL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

import orjson

from soar.errors import LeaseLost, StoreError
from soar.models.audit import AuditEvent, AuditKind, AuditRecord, StoredCheckpoint, leaf_hash
from soar.models.run import (
    AttachedAlert,
    DedupEntry,
    Run,
    RunStatus,
    StepState,
    StepStatus,
    Timer,
    TimerKind,
    Transition,
    TransitionKind,
    TriggerKind,
)
from soar.store.base import ROLLOUT_MODES, ApiToken, Change, InboxItem, PlaybookVersion, Rollout

if TYPE_CHECKING:
    from pydantic import JsonValue

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TERMINAL_STATUSES: Final = frozenset(s.value for s in RunStatus if s.is_terminal)
_MICROSECOND: Final = timedelta(microseconds=1)
_slow_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# orjson is several times faster; what it would quietly turn into text (datetimes, dataclasses,
# subclasses) it passes to the standard library, which refuses or encodes as before
_FAST_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# orjson reads integers beyond 64 bits as floats: text with a run of 19+ digits takes the
# standard library's exact path (an id in a string costs a little speed, never a digit)
_LONG_DIGITS: Final = re.compile(r"[0-9]{19}")

# Enum members are written as `member._value_`: the same text as `.value`, without the cost of
# an enum property on every row.

# Column order of each table; the SQL in `migrations` and `sqlite` follows it.
RunRow: TypeAlias = tuple[
    str,
    str,
    int,
    str,
    str,
    str,
    int,
    int,
    str | None,
    str,
    str | None,
    str | None,
    str | None,
    int,
    str | None,
]
StepRow: TypeAlias = tuple[
    str,
    str,
    str,
    int,
    str,
    str | None,
    str | None,
    str | None,
    int,
    int | None,
    int | None,
    int | None,
    int,
]
TransitionRow: TypeAlias = tuple[str, int, int, str, str | None, int | None, str | None]
TimerRow: TypeAlias = tuple[str, str, str, int, str | None]
DedupRow: TypeAlias = tuple[str, str, str, int]
AlertRow: TypeAlias = tuple[str, int, str | None]
MarkRow: TypeAlias = tuple[str, int]
AuditRow: TypeAlias = tuple[
    int,
    int,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str,
    str,
    str,
]
CheckpointRow: TypeAlias = tuple[int, int, str, str, str]
LeaseRow: TypeAlias = tuple[str, str, int, int]
"""A lease to take: run id, owner, token, and the token it must replace (0: none yet)."""
FenceRow: TypeAlias = tuple[str, int]
HeartbeatRow: TypeAlias = tuple[str, int]
EventRow: TypeAlias = tuple[
    int, str, str, str | None, str | None, str | None, str | None, str | None, str | None, bytes
]
"""An audit event before it is sealed: an `AuditRow` without its seq, prev and hash, and with
the body still bytes (the writer hashes those, then stores them as text)."""
InboxRow: TypeAlias = tuple[str, str, str, str | None, str, int, int | None, str | None]
DoneRow: TypeAlias = tuple[str, int, str | None]
"""An inbox item done (its id), or every pending item of a run (the run's id): when, outcome."""
TokenRow: TypeAlias = tuple[str, str, str, str, int, str, int | None]
VersionRow: TypeAlias = tuple[str, int, str, str, str, int]
RolloutRow: TypeAlias = tuple[str, int, int, str, str, int]


# The columns of each row tuple above, in order: what every backend writes them into.
RUN_COLUMNS: Final = (
    "id, playbook_id, playbook_version, playbook_digest, status, trigger, created_at, "
    "updated_at, alert, inputs, parent_run, parent_step, error, dry_run, trace"
)
STEP_COLUMNS: Final = (
    "run_id, key, status, attempt, idempotency_key, inputs, output, error, retryable, "
    "started_at, finished_at, due_at, ord"
)
TRANSITION_COLUMNS: Final = "run_id, seq, at, kind, step, attempt, data"
TIMER_COLUMNS: Final = "id, run_id, kind, due_at, step"
AUDIT_COLUMNS: Final = (
    "seq, at, kind, actor, run_id, alert_id, step, action, target, trace_id, body, prev, hash"
)
INBOX_COLUMNS: Final = "id, run_id, kind, body, actor, at, done_at, outcome"
TOKEN_COLUMNS: Final = "id, name, role, digest, created_at, created_by, revoked_at"  # noqa: S105
VERSION_COLUMNS: Final = "playbook_id, version, digest, source, author, created_at"
ROLLOUT_COLUMNS: Final = "playbook_id, version, share, mode, actor, at"


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch. Raises StoreError for a naive datetime (no time zone)."""
    if moment.tzinfo is None:
        raise StoreError(f"naive datetime {moment.isoformat()} (times must be timezone-aware)")
    return (moment - _EPOCH) // _MICROSECOND


def _opt_micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime `micros` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def _opt_datetime(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def to_json(value: JsonValue | dict[str, JsonValue]) -> str | None:
    """Compact JSON text, or None for None. Raises StoreError for values JSON cannot hold."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=_FAST_OPTIONS).decode()
    except TypeError:
        pass  # integers beyond 64 bits and other rarities: the standard library says
    try:
        return _slow_encode_json(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"not JSON-serialisable: {exc}") from exc


def from_json(text: str | None) -> JsonValue:
    """The value `to_json` encoded."""
    if text is None:
        return None
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)  # type: ignore[no-any-return]
        except orjson.JSONDecodeError:
            pass  # NaN or Infinity, as older rows may hold: the standard library reads them
    return json.loads(text)  # type: ignore[no-any-return]


def _json_object(text: str) -> dict[str, JsonValue]:
    return from_json(text)  # type: ignore[return-value]


def run_row(run: Run) -> RunRow:
    return (
        run.id,
        run.playbook_id,
        run.playbook_version,
        run.playbook_digest,
        run.status._value_,
        run.trigger._value_,
        to_micros(run.created_at),
        to_micros(run.updated_at),
        to_json(run.alert),
        to_json(run.inputs) or "{}",
        run.parent_run,
        run.parent_step,
        run.error,
        1 if run.dry_run else 0,
        run.trace,
    )


def run_from(row: tuple[Any, ...]) -> Run:
    return Run(
        id=row[0],
        playbook_id=row[1],
        playbook_version=row[2],
        playbook_digest=row[3],
        status=RunStatus(row[4]),
        trigger=TriggerKind(row[5]),
        created_at=from_micros(row[6]),
        updated_at=from_micros(row[7]),
        alert=from_json(row[8]),
        inputs=_json_object(row[9]),
        parent_run=row[10],
        parent_step=row[11],
        error=row[12],
        dry_run=bool(row[13]),
        trace=row[14],
    )


def step_row(step: StepState) -> StepRow:
    return (
        step.run_id,
        step.key,
        step.status._value_,
        step.attempt,
        step.idempotency_key,
        to_json(step.inputs),
        to_json(step.output),
        step.error,
        1 if step.retryable else 0,
        _opt_micros(step.started_at),
        _opt_micros(step.finished_at),
        _opt_micros(step.due_at),
        step.order,
    )


def step_from(row: tuple[Any, ...]) -> StepState:
    return StepState(
        run_id=row[0],
        key=row[1],
        status=StepStatus(row[2]),
        attempt=row[3],
        idempotency_key=row[4],
        inputs=from_json(row[5]),
        output=from_json(row[6]),
        error=row[7],
        retryable=bool(row[8]),
        started_at=_opt_datetime(row[9]),
        finished_at=_opt_datetime(row[10]),
        due_at=_opt_datetime(row[11]),
        order=row[12],
    )


def transition_row(transition: Transition) -> TransitionRow:
    return (
        transition.run_id,
        transition.seq,
        to_micros(transition.at),
        transition.kind._value_,
        transition.step,
        transition.attempt,
        to_json(transition.data),
    )


def transition_from(row: tuple[Any, ...]) -> Transition:
    return Transition(
        run_id=row[0],
        seq=row[1],
        at=from_micros(row[2]),
        kind=TransitionKind(row[3]),
        step=row[4],
        attempt=row[5],
        data=from_json(row[6]),
    )


def timer_row(timer: Timer) -> TimerRow:
    return (timer.id, timer.run_id, timer.kind._value_, to_micros(timer.due_at), timer.step)


def timer_from(row: tuple[Any, ...]) -> Timer:
    return Timer(
        id=row[0], run_id=row[1], kind=TimerKind(row[2]), due_at=from_micros(row[3]), step=row[4]
    )


def dedup_row(entry: DedupEntry) -> DedupRow:
    return (entry.playbook_id, entry.key, entry.run_id, to_micros(entry.expires_at))


def alert_row(alert: AttachedAlert) -> AlertRow:
    return (alert.run_id, alert.seq, to_json(alert.alert))


def alert_from(row: tuple[Any, ...]) -> AttachedAlert:
    return AttachedAlert(run_id=row[0], seq=row[1], alert=from_json(row[2]))


def audit_rows(records: Sequence[AuditRecord]) -> list[AuditRow]:
    return [
        (
            r.seq,
            to_micros(r.event.time),
            r.event.kind._value_,
            r.event.actor,
            r.event.run_id,
            r.event.alert_id,
            r.event.step,
            r.event.action,
            r.event.target,
            r.event.trace_id,
            r.event.body.decode(),
            r.prev,
            r.hash,
        )
        for r in records
    ]


def event_row(event: AuditEvent) -> EventRow:
    """Refuses a naive time (StoreError) before the writer seals anything."""
    return (
        to_micros(event.time),
        event.kind._value_,
        event.actor,
        event.run_id,
        event.alert_id,
        event.step,
        event.action,
        event.target,
        event.trace_id,
        event.body,
    )


def sealed_rows(events: Sequence[EventRow], head: tuple[int, str]) -> list[AuditRow]:
    """Audit rows for `events`, given places after `head` (the last record's seq and hash):
    `seal` on rows, for a writer that has only the rows."""
    seq, prev = head
    sealed: list[AuditRow] = []
    for event in events:
        seq += 1
        digest = leaf_hash(seq, prev, event[9])
        sealed.append((seq, *event[:9], event[9].decode(), prev, digest))
        prev = digest
    return sealed


def audit_from(row: tuple[Any, ...]) -> AuditRecord:
    event = AuditEvent(
        kind=AuditKind(row[2]),
        time=from_micros(row[1]),
        actor=row[3],
        run_id=row[4],
        alert_id=row[5],
        step=row[6],
        action=row[7],
        target=row[8],
        trace_id=row[9],
        body=row[10].encode(),
    )
    return AuditRecord(seq=row[0], prev=row[11], hash=row[12], event=event)


def checkpoint_row(checkpoint: StoredCheckpoint) -> CheckpointRow:
    return (
        checkpoint.tree_size,
        to_micros(checkpoint.time),
        checkpoint.key_id,
        checkpoint.line,
        _encode_list(checkpoint.frontier),
    )


def checkpoint_from(row: tuple[Any, ...]) -> StoredCheckpoint:
    frontier = from_json(row[4])
    return StoredCheckpoint(
        tree_size=row[0],
        time=from_micros(row[1]),
        key_id=row[2],
        line=row[3],
        frontier=tuple(str(h) for h in frontier) if isinstance(frontier, list) else (),
    )


def inbox_row(item: InboxItem) -> InboxRow:
    return (
        item.id,
        item.run_id,
        item.kind,
        to_json(item.body),
        item.actor,
        to_micros(item.at),
        _opt_micros(item.done_at),
        to_json(item.outcome),
    )


def inbox_from(row: tuple[Any, ...]) -> InboxItem:
    return InboxItem(
        id=row[0],
        run_id=row[1],
        kind=row[2],
        body=from_json(row[3]),
        actor=row[4],
        at=from_micros(row[5]),
        done_at=_opt_datetime(row[6]),
        outcome=from_json(row[7]),
    )


def done_row(done: tuple[str, datetime, JsonValue]) -> DoneRow:
    return (done[0], to_micros(done[1]), to_json(done[2]))


def token_row(token: ApiToken) -> TokenRow:
    return (
        token.id,
        token.name,
        token.role,
        token.digest,
        to_micros(token.created_at),
        token.created_by,
        _opt_micros(token.revoked_at),
    )


def token_from(row: tuple[Any, ...]) -> ApiToken:
    return ApiToken(
        id=row[0],
        name=row[1],
        role=row[2],
        digest=row[3],
        created_at=from_micros(row[4]),
        created_by=row[5],
        revoked_at=_opt_datetime(row[6]),
    )


def version_row(version: PlaybookVersion) -> VersionRow:
    return (
        version.playbook_id,
        version.version,
        version.digest,
        version.source,
        version.author,
        to_micros(version.created_at),
    )


def version_from(row: tuple[Any, ...]) -> PlaybookVersion:
    return PlaybookVersion(
        playbook_id=row[0],
        version=int(row[1]),
        digest=row[2],
        source=row[3],
        author=row[4],
        created_at=from_micros(row[5]),
    )


def rollout_row(rollout: Rollout) -> RolloutRow:
    """Refuses (StoreError) a share outside 0..100 or a mode not in `ROLLOUT_MODES`."""
    if not 0 <= rollout.share <= 100:
        raise StoreError(f"a rollout share is 0..100, not {rollout.share}")
    if rollout.mode not in ROLLOUT_MODES:
        raise StoreError(
            f"a rollout mode is one of {', '.join(ROLLOUT_MODES)}, not {rollout.mode!r}"
        )
    return (
        rollout.playbook_id,
        rollout.version,
        rollout.share,
        rollout.mode,
        rollout.actor,
        to_micros(rollout.at),
    )


def rollout_from(row: tuple[Any, ...]) -> Rollout:
    return Rollout(
        playbook_id=row[0],
        version=int(row[1]),
        share=int(row[2]),
        mode=row[3],
        actor=row[4],
        at=from_micros(row[5]),
    )


def conflicting_version(row: VersionRow, recorded_digest: str | None) -> str | None:
    """Why `row` cannot be saved when its (playbook_id, version) holds `recorded_digest`
    (None: not recorded), or None when it can (or is already, the same digest)."""
    if recorded_digest is None or recorded_digest == row[2]:
        return None
    return (
        f"version {row[1]} of playbook {row[0]} is already saved with another digest "
        f"({recorded_digest[:19]}): versions are immutable, raise `version`"
    )


def not_open_for_requests(run_id: str, status: str | None) -> str | None:
    """Why a request cannot be recorded for a run in `status` (None: not recorded), or None
    when it can."""
    if status is None:
        return f"no run {run_id}"
    if status in _TERMINAL_STATUSES:
        return f"run {run_id} has already {status}"
    return None


def _encode_list(values: Sequence[str]) -> str:
    return to_json(list(values)) or "[]"


class EncodedChange(NamedTuple):
    """A `Change` as rows, ready to write (a tuple, so it crosses to the writer process
    cheaply). Timers are cancelled before they are set, so a change that cancels and re-sets
    the same timer id leaves it pending."""

    runs: Sequence[RunRow] = ()
    steps: Sequence[StepRow] = ()
    transitions: Sequence[TransitionRow] = ()
    cancel_timers: Sequence[str] = ()
    timers: Sequence[TimerRow] = ()
    dedup: Sequence[DedupRow] = ()
    alerts: Sequence[AlertRow] = ()
    cron_marks: Sequence[MarkRow] = ()
    audit: Sequence[EventRow] = ()
    """Sealed by the backend inside the write transaction, where the log's head is known."""
    checkpoints: Sequence[CheckpointRow] = ()
    leases: Sequence[LeaseRow] = ()
    fence: Sequence[FenceRow] = ()
    heartbeats: Sequence[HeartbeatRow] = ()
    forget_workers: Sequence[str] = ()
    inbox: Sequence[InboxRow] = ()
    inbox_done: Sequence[DoneRow] = ()
    close_inbox: Sequence[DoneRow] = ()
    """Written after `inbox` and `inbox_done`: items recorded in the same change are closed too."""
    tokens: Sequence[TokenRow] = ()
    versions: Sequence[VersionRow] = ()
    rollouts: Sequence[RolloutRow] = ()


def encode(change: Change) -> EncodedChange:
    """Every row of `change`. Raises StoreError (before anything is written) for a value the
    store cannot hold: a naive datetime or a value JSON cannot encode."""
    # Most changes fill two or three of the lists: skip the empty ones cheaply.
    return EncodedChange(
        [run_row(r) for r in change.runs] if change.runs else (),
        [step_row(s) for s in change.steps] if change.steps else (),
        [transition_row(t) for t in change.transitions] if change.transitions else (),
        change.cancel_timers[:] if change.cancel_timers else (),
        [timer_row(t) for t in change.timers] if change.timers else (),
        [dedup_row(d) for d in change.dedup] if change.dedup else (),
        [alert_row(a) for a in change.alerts] if change.alerts else (),
        [(p, to_micros(m)) for p, m in change.cron_marks.items()] if change.cron_marks else (),
        [event_row(e) for e in change.audit] if change.audit else (),
        [checkpoint_row(c) for c in change.checkpoints] if change.checkpoints else (),
        [(x.run_id, x.owner, x.token, x.expect) for x in change.leases] if change.leases else (),
        change.fence[:] if change.fence else (),
        [(h.worker, to_micros(h.expires_at)) for h in change.heartbeats]
        if change.heartbeats
        else (),
        change.forget_workers[:] if change.forget_workers else (),
        [inbox_row(i) for i in change.inbox] if change.inbox else (),
        [done_row(d) for d in change.inbox_done] if change.inbox_done else (),
        [done_row(c) for c in change.close_inbox] if change.close_inbox else (),
        [token_row(t) for t in change.tokens] if change.tokens else (),
        [version_row(v) for v in change.playbook_versions] if change.playbook_versions else (),
        [rollout_row(r) for r in change.rollouts] if change.rollouts else (),
    )


def lease_runs(leases: Sequence[LeaseRow], fence: Sequence[FenceRow]) -> list[str]:
    """The runs whose current tokens `settle_leases` needs, each once."""
    return list(dict.fromkeys([*(x[0] for x in leases), *(f[0] for f in fence)]))


def settle_leases(
    current: Mapping[str, int], leases: Sequence[LeaseRow], fence: Sequence[FenceRow]
) -> list[LeaseRow]:
    """The lease rows to write, given each run's `current` token (a run without a lease has
    none): every lease taken in order, then every fence checked against the result.

    Raises:
        LeaseLost: a lease whose run's token is not the one it expects, or a fence whose run's
            token is another (the change must then write nothing).
    """
    tokens = dict(current)
    written: dict[str, LeaseRow] = {}
    for lease in leases:
        run_id, _, token, expect = lease
        found = tokens.get(run_id, 0)
        if found != expect:
            if expect == 0:
                raise LeaseLost(f"run {run_id} is already recorded and leased")
            raise LeaseLost(f"run {run_id} was taken over (token {found}, not {expect})")
        tokens[run_id] = token
        written[run_id] = lease
    for run_id, token in fence:
        found = tokens.get(run_id, 0)
        if found != token:
            raise LeaseLost(
                f"run {run_id} is held by another worker now (token {found}, not {token})"
            )
    return list(written.values())
