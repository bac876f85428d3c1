"""Rollouts: which version of a playbook a matching alert starts, and the rules a change of
shares must keep. Pure functions over the store's `Rollout` records; the engine, the API and
the CLI all decide through them.

A playbook's current state is the last record of each of its versions. At most one version is
live at 100: the stable one. Live versions below 100 are canaries: each takes its share of the
matching alerts, the stable version the rest (with no stable version, the rest start nothing).
A `dry_run` version with share S also runs, as a dry run, on S % of the matching alerts, beside
whatever the live choice is. Which alerts: a stable hash of the alert's key puts it in one of
100 buckets; canaries fill buckets from 0 up (oldest version first), dry runs from 99 down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from soar.errors import ConflictError
from soar.store.base import Rollout

BUCKETS: Final = 100
FULL: Final = 100


class Mode(StrEnum):
    LIVE = "live"
    DRY_RUN = "dry_run"


class RolloutRefused(ConflictError):
    """A rollout the rules do not allow: an unknown version, a share outside 0..100, live
    canaries above 100 % together, nothing to roll back."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What one alert starts of one playbook: the live version (None: nothing live takes this
    bucket) and the versions that run beside it as dry runs."""

    live: int | None
    dry_runs: tuple[int, ...] = ()


def current_state(history: Iterable[Rollout]) -> dict[str, dict[int, Rollout]]:
    """Per playbook, per version, the last record of `history` (oldest first)."""
    state: dict[str, dict[int, Rollout]] = {}
    for record in history:
        state.setdefault(record.playbook_id, {})[record.version] = record
    return state


def stable_version(state: Mapping[int, Rollout]) -> int | None:
    """The version live at 100, if any."""
    for version, record in state.items():
        if record.mode == Mode.LIVE and record.share >= FULL:
            return version
    return None


def canaries(state: Mapping[int, Rollout]) -> list[tuple[int, int]]:
    """(version, share) of the live versions below 100 with a share, oldest version first."""
    return sorted(
        (v, r.share) for v, r in state.items() if r.mode == Mode.LIVE and 0 < r.share < FULL
    )


def dry_runs(state: Mapping[int, Rollout]) -> list[tuple[int, int]]:
    """(version, share) of the dry-run versions with a share, oldest version first."""
    return sorted((v, r.share) for v, r in state.items() if r.mode == Mode.DRY_RUN and r.share > 0)


def bucket_of(playbook_id: str, key: str) -> int:
    """The bucket (0..99) of an alert whose key (its dedup key, else its id) is `key`: the same
    on every engine, every run, every release."""
    digest = hashlib.sha256(f"{playbook_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose(state: Mapping[int, Rollout], bucket: int) -> Choice:
    """The versions an alert in `bucket` starts, given a playbook's current state."""
    live: int | None = None
    start = 0
    for version, share in canaries(state):
        if start <= bucket < start + share:
            live = version
            break
        start += share
    else:
        live = stable_version(state)
    shadows = tuple(v for v, share in dry_runs(state) if bucket >= BUCKETS - share)
    return Choice(live, shadows)


def plan_rollout(
    state: Mapping[int, Rollout],
    *,
    playbook_id: str,
    version: int,
    share: int,
    mode: str,
    actor: str,
    at: datetime,
    known: Collection[int],
) -> list[Rollout]:
    """The records that give `version` of a playbook `share` percent in `mode`, given its
    current `state` and the versions saved (`known`). A live version set to 100 is promoted:
    the version that was stable is set to 0 in the same records.

    Raises:
        RolloutRefused: the version is not saved, the share is outside 0..100, the mode is
            unknown, or live canaries would take more than 100 % together.
    """
    if version not in known:
        raise RolloutRefused(f"playbook {playbook_id} has no saved version {version}")
    if not 0 <= share <= FULL:
        raise RolloutRefused(f"a share is 0..100, not {share}")
    if mode not in tuple(Mode):
        raise RolloutRefused(f"a mode is live or dry_run, not {mode!r}")
    records = [Rollout(playbook_id, version, share, mode, actor, at)]
    if mode == Mode.LIVE and share == FULL:
        records += [
            Rollout(playbook_id, v, 0, Mode.LIVE, actor, at)
            for v, r in sorted(state.items())
            if v != version and r.mode == Mode.LIVE and r.share >= FULL
        ]
    after = dict(state)
    for record in records:
        after[record.version] = record
    taken = sum(s for _, s in canaries(after))
    if taken > FULL:
        raise RolloutRefused(
            f"live canaries of {playbook_id} would take {taken} % of its alerts together "
            "(at most 100): lower another canary first"
        )
    return records


def plan_rollback(
    state: Mapping[int, Rollout],
    history: Iterable[Rollout],
    *,
    playbook_id: str,
    actor: str,
    at: datetime,
    version: int | None = None,
) -> list[Rollout]:
    """The records that roll a playbook back: `version` (or, without one, every live canary)
    set to share 0; with no canary, the version that was stable before the current stable one
    promoted again.

    Raises:
        RolloutRefused: `version` has no share, or there is no canary and no earlier stable
            version to go back to.
    """
    if version is not None:
        record = state.get(version)
        if record is None or record.share == 0:
            raise RolloutRefused(f"version {version} of {playbook_id} has no share to withdraw")
        return [replace(record, share=0, actor=actor, at=at)]
    live = canaries(state)
    if live:
        return [Rollout(playbook_id, v, 0, Mode.LIVE, actor, at) for v, _ in live]
    stable = stable_version(state)
    earlier = [
        r.version
        for r in history
        if r.playbook_id == playbook_id
        and r.mode == Mode.LIVE
        and r.share >= FULL
        and r.version != stable
    ]
    if not earlier:
        raise RolloutRefused(f"{playbook_id} has no canary and no earlier stable version")
    return plan_rollout(
        state,
        playbook_id=playbook_id,
        version=earlier[-1],
        share=FULL,
        mode=Mode.LIVE,
        actor=actor,
        at=at,
        known={earlier[-1]},
    )
