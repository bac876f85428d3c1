"""The `Store` protocol: every backend (SQLite, PostgreSQL, memory) keeps runs the same way.

Writes go through one method, `apply`, which takes a `Change` and returns only once the change
is durable. A change is all-or-nothing. Backends may commit many changes together (group
commit), but never acknowledge one before its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol

from soar.models.audit import AuditEvent, AuditFilter, AuditRecord, StoredCheckpoint
from soar.models.run import (
    AttachedAlert,
    DedupEntry,
    Run,
    RunStatus,
    StepState,
    Timer,
    Transition,
)

if TYPE_CHECKING:
    from pydantic import JsonValue

INBOX_KINDS: Final = ("decide", "abort", "event")
"""What an inbox item asks of a run: decide an approval, abort the run, attach an event."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A request for a run, recorded by any process and carried out by the worker that holds
    the run's lease (see `Change.inbox`). `kind` is one of `INBOX_KINDS`; `actor` is who asked.
    Pending while `done_at` is None; once done, `outcome` says how it went."""

    id: str
    run_id: str
    kind: str
    body: JsonValue
    actor: str
    at: datetime
    done_at: datetime | None = None
    outcome: JsonValue = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A credential of the HTTP API: `digest` is a hash of the secret (the secret itself is never
    stored), `role` what it may do. Revoked once `revoked_at` is set; kept, not deleted, so that
    audit records naming it still resolve."""

    id: str
    name: str
    role: str
    digest: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


ROLLOUT_MODES: Final = ("live", "dry_run")
"""How a rolled-out version runs: `live` (its runs act) or `dry_run` (a shadow beside the live
choice: its runs plan and call nothing)."""


@dataclass(frozen=True, slots=True)
class PlaybookVersion:
    """One saved version of a playbook: immutable once stored. `digest` is the hash of
    `source` (`LoadedPlaybook.digest`), `author` who saved it (`file:<path>` for a file the
    engine found in its playbooks directory)."""

    playbook_id: str
    version: int
    digest: str
    source: str
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Rollout:
    """A version's share of its playbook's matching alerts from `at` on: `share` percent
    (0..100) in `mode` (one of `ROLLOUT_MODES`), set by `actor`. Rollouts are a history: the
    last record of each (playbook, version) is its current state."""

    playbook_id: str
    version: int
    share: int
    mode: str
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """Take a run's lease: written only if the run's fencing token is still `expect` (0 when
    the run has no lease yet), in which case `owner` holds it now with `token`. `owner` ""
    releases it (nobody holds it: any worker may claim it)."""

    run_id: str
    owner: str
    token: int
    expect: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A worker is alive until `expires_at`; the leases it holds are its runs until then."""

    worker: str
    expires_at: datetime


@dataclass(slots=True)
class Change:
    """What one engine decision writes: upserts of the run and steps, appended transitions,
    timers set and cancelled, dedup entries, attached alerts, cron marks, the audit events that
    record it (sealed into the log in the same transaction) and signed checkpoints."""

    runs: list[Run] = field(default_factory=list)
    steps: list[StepState] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    cancel_timers: list[str] = field(default_factory=list)
    dedup: list[DedupEntry] = field(default_factory=list)
    alerts: list[AttachedAlert] = field(default_factory=list)
    cron_marks: dict[str, datetime] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    checkpoints: list[StoredCheckpoint] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    """Leases taken (new runs, take-overs): checked and written before anything else."""
    fence: list[tuple[str, int]] = field(default_factory=list)
    """(run id, token) pairs the writer holds: if any run's token is another now, the whole
    change fails with LeaseLost and nothing of it is written."""
    heartbeats: list[Heartbeat] = field(default_factory=list)
    forget_workers: list[str] = field(default_factory=list)
    """Workers that are gone: their leases are up for anyone to claim at once."""
    inbox: list[InboxItem] = field(default_factory=list)
    """Requests recorded (pending: their `done_at` and `outcome` are not written). Each run
    must be recorded and not terminal, checked under the run's lease row so that it cannot end
    meanwhile; else the whole change fails with ConflictError. A repeated id is a
    ConflictError too."""
    inbox_done: list[tuple[str, datetime, JsonValue]] = field(default_factory=list)
    """(item id, done at, outcome): requests carried out, written in the same change as what
    carries them out. An item that is not pending (unknown, or done already) fails the whole
    change with ConflictError: no request is ever carried out twice."""
    close_inbox: list[tuple[str, datetime, JsonValue]] = field(default_factory=list)
    """(run id, done at, outcome): every request of the run still pending is done with this
    outcome (written with a run's last write: a finished run has no pending requests)."""
    tokens: list[ApiToken] = field(default_factory=list)
    """API tokens, upserted by id (a revocation is the token written again with `revoked_at`).
    Two tokens with one digest are a ConflictError."""
    playbook_versions: list[PlaybookVersion] = field(default_factory=list)
    """Versions saved. Never updated: the same digest again is a no-op; another digest for a
    recorded (playbook_id, version) is a ConflictError."""
    rollouts: list[Rollout] = field(default_factory=list)
    """Rollout records appended, in order (a share outside 0..100 or an unknown mode is a
    StoreError). The store does not judge them: `soar.engine.rollout` does."""

    def is_empty(self) -> bool:
        return not (
            self.runs
            or self.steps
            or self.transitions
            or self.timers
            or self.cancel_timers
            or self.dedup
            or self.alerts
            or self.cron_marks
            or self.audit
            or self.checkpoints
            or self.leases
            or self.fence
            or self.heartbeats
            or self.forget_workers
            or self.inbox
            or self.inbox_done
            or self.close_inbox
            or self.tokens
            or self.playbook_versions
            or self.rollouts
        )


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything needed to continue a run: the run, its steps, its attached alerts, its timers."""

    run: Run
    steps: dict[str, StepState]
    alerts: list[AttachedAlert]
    timers: list[Timer]
    last_seq: int


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs `list_runs` returns, newest first."""

    playbook_id: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    since: datetime | None = None
    before: datetime | None = None
    """Only runs created before this (paging back through the list)."""
    limit: int = 100


class Store(Protocol):
    """Durable state of runs. Implementations: `SqliteStore`, `MemoryStore` (tests, benchmarks)."""

    async def apply(self, change: Change) -> None:
        """Write `change` atomically; return once it is durable.

        Raises:
            StoreError: the write failed; nothing of `change` was written.
        """

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        """The run with its steps, attached alerts and pending timers, or None."""

    async def has_run(self, run_id: str) -> bool:
        """Whether the run is recorded (one cheap read, for every alert delivered)."""

    async def list_runs(self, run_filter: RunFilter) -> list[Run]:
        """Runs matching the filter, newest first."""

    async def unfinished_runs(self) -> list[str]:
        """Ids of the runs not in a terminal state, oldest first (resumed at start-up)."""

    async def transitions(self, run_id: str) -> list[Transition]:
        """The run's timeline in order."""

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        """Pending timers due at or before `now`, earliest first."""

    async def next_timer_due(self) -> datetime | None:
        """When the earliest pending timer is due, or None when there is none."""

    async def find_dedup(self, playbook_id: str, key: str, now: datetime) -> str | None:
        """The run that alerts with this key join, while its window is open."""

    async def cron_marks(self) -> dict[str, datetime]:
        """Per playbook, the last cron fire time that was started."""

    async def audit_head(self) -> tuple[int, str]:
        """The last audit record's seq and hash: (0, ZERO_HASH) for an empty log."""

    async def audit_records(self, after_seq: int, limit: int) -> list[AuditRecord]:
        """Audit records with seq > `after_seq`, in order, at most `limit`."""

    async def query_audit(self, audit_filter: AuditFilter) -> list[AuditRecord]:
        """Audit records matching the filter, in order."""

    async def checkpoints(self, *, after_size: int = 0) -> list[StoredCheckpoint]:
        """Signed checkpoints with a tree size above `after_size`, smallest first."""

    async def workers(self) -> list[Heartbeat]:
        """Every worker's last heartbeat (workers forgotten since are not listed)."""

    async def orphaned_runs(
        self, now: datetime, dead: Sequence[str], limit: int
    ) -> list[tuple[str, int]]:
        """Unfinished runs nobody is driving, oldest first, with their fencing tokens: runs
        with no lease or a released one, or whose holder's heartbeat expired by `now`, is
        forgotten, or is in `dead` (found dead otherwise). At most `limit`."""

    async def held_runs(self, worker: str) -> dict[str, int]:
        """The runs `worker` holds the lease of, with their tokens."""

    async def inbox_for(self, worker: str, limit: int) -> list[InboxItem]:
        """Pending requests of the runs `worker` holds the lease of, in the order they were
        recorded, at most `limit`."""

    async def inbox_item(self, id: str) -> InboxItem | None:
        """One request, pending or done, or None when there is no such item."""

    async def api_token(self, digest: str) -> ApiToken | None:
        """The token with this digest (revoked or not), or None."""

    async def api_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too, oldest first."""

    async def playbook_versions(self, playbook_id: str | None = None) -> list[PlaybookVersion]:
        """The saved versions of one playbook (every playbook's with None), by playbook id
        then version."""

    async def playbook_version(self, digest: str) -> PlaybookVersion | None:
        """The saved version with this digest, or None."""

    async def rollouts(self, playbook_id: str | None = None) -> list[Rollout]:
        """The rollout history of one playbook (every playbook's with None), oldest first."""

    async def close(self) -> None:
        """Finish pending writes and release the backend."""
