"""`MemoryStore`: the `Store` protocol in plain dicts, for tests and for measuring the engine alone.

It keeps the same rows as SQLite (see `rows`), so values round-trip exactly as they do there,
and it checks a whole change before it writes any of it. Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from soar.errors import ConflictError, StoreError
from soar.models.audit import ZERO_HASH, AuditFilter, AuditRecord, StoredCheckpoint, seal
from soar.models.run import Run, RunStatus, Timer, Transition
from soar.store import rows
from soar.store.base import (
    ApiToken,
    Change,
    Heartbeat,
    InboxItem,
    PlaybookVersion,
    Rollout,
    RunFilter,
    RunSnapshot,
)

_TERMINAL = frozenset(s.value for s in RunStatus if s.is_terminal)


class MemoryStore:
    """Runs in dicts. Every method is atomic: none awaits before it has finished its work."""

    def __init__(self) -> None:
        self._runs: dict[str, rows.RunRow] = {}
        self._steps: dict[str, dict[str, rows.StepRow]] = {}
        self._transitions: dict[str, dict[int, rows.TransitionRow]] = {}
        self._timers: dict[str, rows.TimerRow] = {}
        self._dedup: dict[tuple[str, str], rows.DedupRow] = {}
        self._alerts: dict[str, dict[int, rows.AlertRow]] = {}
        self._marks: dict[str, int] = {}
        self._audit: list[AuditRecord] = []
        self._checkpoints: dict[int, rows.CheckpointRow] = {}
        self._leases: dict[str, tuple[str, int]] = {}
        self._workers: dict[str, int] = {}
        self._inbox: dict[str, rows.InboxRow] = {}
        """Every item, in the order recorded (dicts keep it)."""
        self._tokens: dict[str, rows.TokenRow] = {}
        self._versions: dict[tuple[str, int], rows.VersionRow] = {}
        self._rollouts: list[rows.RolloutRow] = []
        self._closed = False

    async def apply(self, change: Change) -> None:
        """Write `change` whole, or nothing of it.

        Raises:
            LeaseLost: a lease or fence that does not hold (see `Change.leases`).
            ConflictError: a transition's (run_id, seq) is already recorded or repeats in `change`.
            StoreError: a value the store cannot hold (naive datetime, non-JSON), or closed.
        """
        self._check_open()
        encoded = rows.encode(change)
        taken: list[rows.LeaseRow] = []
        if encoded.leases or encoded.fence:
            current = {
                r: self._leases[r][1]
                for r in rows.lease_runs(encoded.leases, encoded.fence)
                if r in self._leases
            }
            taken = rows.settle_leases(current, encoded.leases, encoded.fence)
        seen: set[tuple[str, int]] = set()
        for row in encoded.transitions:
            key = (row[0], row[1])
            if key in seen or row[1] in self._transitions.get(row[0], ()):
                raise ConflictError(f"transition {row[1]} of run {row[0]} is already recorded")
            seen.add(key)
        for checkpoint in encoded.checkpoints:
            if checkpoint[0] in self._checkpoints:
                raise ConflictError(f"a checkpoint at tree size {checkpoint[0]} already exists")
        self._check_inbox(encoded)
        self._check_tokens(encoded.tokens)
        self._check_versions(encoded.versions)
        for run_id, owner, token, _ in taken:
            self._leases[run_id] = (owner, token)
        for worker, expires in encoded.heartbeats:
            self._workers[worker] = expires
        for worker in encoded.forget_workers:
            self._workers.pop(worker, None)
        for run in encoded.runs:
            self._runs[run[0]] = run
        for step in encoded.steps:
            self._steps.setdefault(step[0], {})[step[1]] = step
        for transition in encoded.transitions:
            self._transitions.setdefault(transition[0], {})[transition[1]] = transition
        for timer_id in encoded.cancel_timers:
            self._timers.pop(timer_id, None)
        for timer in encoded.timers:
            self._timers[timer[0]] = timer
        for entry in encoded.dedup:
            self._dedup[(entry[0], entry[1])] = entry
        for alert in encoded.alerts:
            self._alerts.setdefault(alert[0], {})[alert[1]] = alert
        self._marks.update(encoded.cron_marks)
        if encoded.audit:
            head = (len(self._audit), self._audit[-1].hash if self._audit else ZERO_HASH)
            self._audit.extend(seal(list(change.audit), head))
        for checkpoint in encoded.checkpoints:
            self._checkpoints[checkpoint[0]] = checkpoint
        for item in encoded.inbox:
            self._inbox[item[0]] = item
        for item_id, done_at, outcome in encoded.inbox_done:
            self._inbox[item_id] = (*self._inbox[item_id][:6], done_at, outcome)
        if encoded.close_inbox and self._inbox:
            closing = {c[0]: c for c in encoded.close_inbox}
            for item_id, item in list(self._inbox.items()):
                close = closing.get(item[1])
                if close is not None and item[6] is None:
                    self._inbox[item_id] = (*item[:6], close[1], close[2])
        for api_token in encoded.tokens:
            self._tokens[api_token[0]] = api_token
        for version in encoded.versions:
            self._versions.setdefault((version[0], version[1]), version)
        self._rollouts.extend(encoded.rollouts)

    def _check_versions(self, versions: Sequence[rows.VersionRow]) -> None:
        """Refuse the change (ConflictError) for a version saved before with another digest,
        or another version with a digest saved before."""
        digests = {v[2]: k for k, v in self._versions.items()}
        saved = {k: v[2] for k, v in self._versions.items()}
        for version in versions:
            key = (version[0], version[1])
            refusal = rows.conflicting_version(version, saved.get(key))
            if refusal is not None:
                raise ConflictError(refusal)
            if digests.get(version[2], key) != key:
                raise ConflictError(f"a version with the digest {version[2][:19]} is saved")
            saved[key], digests[version[2]] = version[2], key

    def _check_inbox(self, encoded: rows.EncodedChange) -> None:
        """Refuse the change (ConflictError) for a request to a run that is not recorded or has
        ended, a repeated item id, or an item done that is not pending."""
        runs = {r[0]: r for r in encoded.runs}  # as this change leaves them
        recorded: set[str] = set()
        for item in encoded.inbox:
            run = runs.get(item[1]) or self._runs.get(item[1])
            refusal = rows.not_open_for_requests(item[1], None if run is None else run[4])
            if refusal is not None:
                raise ConflictError(refusal)
            if item[0] in self._inbox or item[0] in recorded:
                raise ConflictError(f"inbox item {item[0]} is already recorded")
            recorded.add(item[0])
        done: set[str] = set()
        for item_id, _, _ in encoded.inbox_done:
            known = self._inbox.get(item_id)
            if (
                item_id in done
                or (known is None and item_id not in recorded)
                or (known is not None and known[6] is not None)
            ):
                raise ConflictError(f"inbox item {item_id} is not pending")
            done.add(item_id)

    def _check_tokens(self, tokens: Sequence[rows.TokenRow]) -> None:
        if not tokens:
            return
        digests = {t[3]: t[0] for t in self._tokens.values()}
        for token in tokens:  # in order: a later upsert of the same id wins
            digests = {d: i for d, i in digests.items() if i != token[0]}
            if token[3] in digests:
                raise ConflictError(f"an API token with the digest of {token[0]} already exists")
            digests[token[3]] = token[0]

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        steps = sorted(self._steps.get(run_id, {}).values(), key=lambda s: (s[12], s[1]))
        alerts = sorted(self._alerts.get(run_id, {}).values(), key=lambda a: a[1])
        timers = sorted((t for t in self._timers.values() if t[1] == run_id), key=_due_order)
        return RunSnapshot(
            run=rows.run_from(run),
            steps={s[1]: rows.step_from(s) for s in steps},
            alerts=[rows.alert_from(a) for a in alerts],
            timers=[rows.timer_from(t) for t in timers],
            last_seq=max(self._transitions.get(run_id, ()), default=0),
        )

    async def has_run(self, run_id: str) -> bool:
        self._check_open()
        return run_id in self._runs

    async def list_runs(self, run_filter: RunFilter) -> list[Run]:
        self._check_open()
        statuses = {s.value for s in run_filter.statuses}
        since = None if run_filter.since is None else rows.to_micros(run_filter.since)
        before = None if run_filter.before is None else rows.to_micros(run_filter.before)
        matching = [
            r
            for r in self._runs.values()
            if (run_filter.playbook_id is None or r[1] == run_filter.playbook_id)
            and (not statuses or r[4] in statuses)
            and (since is None or r[6] >= since)
            and (before is None or r[6] < before)
        ]
        matching.sort(key=lambda r: (r[6], r[0]), reverse=True)
        return [rows.run_from(r) for r in matching[: max(run_filter.limit, 0)]]

    async def unfinished_runs(self) -> list[str]:
        self._check_open()
        unfinished = [r for r in self._runs.values() if r[4] not in _TERMINAL]
        unfinished.sort(key=lambda r: (r[6], r[0]))
        return [r[0] for r in unfinished]

    async def transitions(self, run_id: str) -> list[Transition]:
        self._check_open()
        timeline = self._transitions.get(run_id, {})
        return [rows.transition_from(timeline[seq]) for seq in sorted(timeline)]

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        self._check_open()
        cutoff = rows.to_micros(now)
        due = sorted((t for t in self._timers.values() if t[3] <= cutoff), key=_due_order)
        return [rows.timer_from(t) for t in due[: max(limit, 0)]]

    async def next_timer_due(self) -> datetime | None:
        self._check_open()
        if not self._timers:
            return None
        return rows.from_micros(min(t[3] for t in self._timers.values()))

    async def find_dedup(self, playbook_id: str, key: str, now: datetime) -> str | None:
        self._check_open()
        entry = self._dedup.get((playbook_id, key))
        if entry is None or entry[3] <= rows.to_micros(now):
            return None
        return entry[2]

    async def cron_marks(self) -> dict[str, datetime]:
        self._check_open()
        return {p: rows.from_micros(m) for p, m in self._marks.items()}

    async def audit_head(self) -> tuple[int, str]:
        self._check_open()
        return (len(self._audit), self._audit[-1].hash) if self._audit else (0, ZERO_HASH)

    async def audit_records(self, after_seq: int, limit: int) -> list[AuditRecord]:
        self._check_open()
        return self._audit[max(after_seq, 0) : max(after_seq, 0) + max(limit, 0)]

    async def query_audit(self, audit_filter: AuditFilter) -> list[AuditRecord]:
        self._check_open()
        f = audit_filter
        found = []
        for record in self._audit[max(f.after_seq, 0) :]:
            event = record.event
            if (
                (f.since is None or event.time >= f.since)
                and (f.until is None or event.time < f.until)
                and (f.run_id is None or event.run_id == f.run_id)
                and (f.alert_id is None or event.alert_id == f.alert_id)
                and (f.actor is None or event.actor == f.actor)
                and (f.kind is None or event.kind == f.kind)
                and (f.action is None or event.action == f.action)
                and (f.target is None or event.target == f.target)
            ):
                found.append(record)
                if len(found) >= f.limit:
                    break
        return found

    async def checkpoints(self, *, after_size: int = 0) -> list[StoredCheckpoint]:
        self._check_open()
        return [
            rows.checkpoint_from(self._checkpoints[size])
            for size in sorted(self._checkpoints)
            if size > after_size
        ]

    async def workers(self) -> list[Heartbeat]:
        self._check_open()
        return [Heartbeat(w, rows.from_micros(e)) for w, e in sorted(self._workers.items())]

    async def orphaned_runs(
        self, now: datetime, dead: Sequence[str], limit: int
    ) -> list[tuple[str, int]]:
        self._check_open()
        cutoff, gone = rows.to_micros(now), set(dead)
        found = []
        for run in sorted(self._runs.values(), key=lambda r: (r[6], r[0])):
            if run[4] in _TERMINAL:
                continue
            owner, token = self._leases.get(run[0], ("", 0))
            expires = self._workers.get(owner)
            if not owner or expires is None or expires <= cutoff or owner in gone:
                found.append((run[0], token))
                if len(found) >= limit:
                    break
        return found

    async def held_runs(self, worker: str) -> dict[str, int]:
        self._check_open()
        return {r: t for r, (owner, t) in self._leases.items() if owner == worker}

    async def inbox_for(self, worker: str, limit: int) -> list[InboxItem]:
        self._check_open()
        held = {r for r, (owner, _) in self._leases.items() if owner == worker and owner}
        pending = [i for i in self._inbox.values() if i[6] is None and i[1] in held]
        return [rows.inbox_from(i) for i in pending[: max(limit, 0)]]

    async def inbox_item(self, id: str) -> InboxItem | None:
        self._check_open()
        item = self._inbox.get(id)
        return None if item is None else rows.inbox_from(item)

    async def api_token(self, digest: str) -> ApiToken | None:
        self._check_open()
        for token in self._tokens.values():
            if token[3] == digest:
                return rows.token_from(token)
        return None

    async def api_tokens(self) -> list[ApiToken]:
        self._check_open()
        ordered = sorted(self._tokens.values(), key=lambda t: (t[4], t[0]))
        return [rows.token_from(t) for t in ordered]

    async def playbook_versions(self, playbook_id: str | None = None) -> list[PlaybookVersion]:
        self._check_open()
        return [
            rows.version_from(self._versions[key])
            for key in sorted(self._versions)
            if playbook_id is None or key[0] == playbook_id
        ]

    async def playbook_version(self, digest: str) -> PlaybookVersion | None:
        self._check_open()
        for version in self._versions.values():
            if version[2] == digest:
                return rows.version_from(version)
        return None

    async def rollouts(self, playbook_id: str | None = None) -> list[Rollout]:
        self._check_open()
        return [
            rows.rollout_from(r)
            for r in self._rollouts
            if playbook_id is None or r[0] == playbook_id
        ]

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")


def _due_order(timer: rows.TimerRow) -> tuple[int, str]:
    return (timer[3], timer[0])
