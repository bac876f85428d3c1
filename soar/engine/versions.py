"""Playbook versions in the store: saving one (audited, the first of a playbook live at once),
rolling one out or back (checked by `rollout`'s rules, audited), and loading a stored one
again, validated against the connectors installed here. The engine, the API and the CLI all
change versions through these functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from soar.connectors.registry import Registry
from soar.engine.evidence import Evidence
from soar.engine.rollout import (
    FULL,
    Mode,
    RolloutRefused,
    current_state,
    plan_rollback,
    plan_rollout,
)
from soar.models.audit import AuditEvent
from soar.playbook.schema import Playbook
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.base import Change, PlaybookVersion, Rollout, Store

_log = logging.getLogger("soar.engine")


@dataclass(frozen=True, slots=True)
class VersionState:
    """A saved version with its current share and mode (share 0, live, when never rolled out)."""

    version: PlaybookVersion
    share: int
    mode: str
    stable: bool


def loaded_from(
    stored: PlaybookVersion,
    registry: Registry,
    *,
    file: str,
    known: Mapping[str, Playbook] | None = None,
) -> LoadedPlaybook | None:
    """A stored version validated again (the connectors installed may have changed since it
    was saved); None, with its problems logged, when it no longer validates."""
    result = validate_text(stored.source, file=file, registry=registry, known_playbooks=known)
    if result.loaded is None:
        for diagnostic in result.diagnostics:
            _log.error(
                "%s v%d not loaded from the store: %s",
                stored.playbook_id,
                stored.version,
                diagnostic,
            )
        return None
    if result.loaded.digest != stored.digest or result.loaded.playbook.id != stored.playbook_id:
        _log.error(
            "%s v%d: the stored source does not match its digest",
            stored.playbook_id,
            stored.version,
        )
        return None
    return result.loaded


def read_version(loaded: LoadedPlaybook, *, author: str, at: datetime) -> PlaybookVersion | None:
    """The version `loaded` is, with its source read from its file again; None when the file
    cannot be read or has changed since it was loaded."""
    try:
        source = Path(loaded.file).read_text(encoding="utf-8")
    except OSError as exc:
        _log.warning(
            "%s: cannot read %s to save it as a version: %s", loaded.playbook.id, loaded.file, exc
        )
        return None
    version = new_version(loaded, source, author=author, at=at)
    if version.digest != loaded.digest:
        _log.warning(
            "%s: %s changed since it was loaded; not saved", loaded.playbook.id, loaded.file
        )
        return None
    return version


def new_version(
    loaded: LoadedPlaybook, source: str, *, author: str, at: datetime
) -> PlaybookVersion:
    """The stored form of `loaded`, whose text is `source`."""
    return PlaybookVersion(
        playbook_id=loaded.playbook.id,
        version=loaded.playbook.version,
        digest=loaded.digest,
        source=source,
        author=author,
        created_at=at,
    )


async def save_version(
    store: Store,
    evidence: Evidence,
    version: PlaybookVersion,
    *,
    previous: tuple[int, str] | None = None,
    go_live: bool | None = None,
) -> list[Rollout]:
    """Save `version` (audited `playbook.created`, or `playbook.changed` naming `previous`),
    and return the rollout records written with it. `go_live` None: live at 100 only when the
    playbook had no saved version; True: promoted (stable) whatever it had.

    Raises:
        ConflictError: that version is saved already with another digest.
    """
    saved = await store.playbook_versions(version.playbook_id)
    if any(v.digest == version.digest for v in saved):
        return []
    live = not saved if go_live is None else go_live
    change = Change(playbook_versions=[version])
    event = evidence.playbook_saved(
        version.playbook_id,
        version.version,
        version.digest,
        version.created_at,
        author=version.author,
        previous=previous,
    )
    if event is not None:
        change.audit.append(event)
    if live:
        state = current_state(await store.rollouts(version.playbook_id))
        change.rollouts = plan_rollout(
            state.get(version.playbook_id, {}),
            playbook_id=version.playbook_id,
            version=version.version,
            share=FULL,
            mode=Mode.LIVE,
            actor=version.author,
            at=version.created_at,
            known={version.version},
        )
        known = {v.version: v.digest for v in saved} | {version.version: version.digest}
        change.audit += _rolled_out(evidence, change.rollouts, known)
    await store.apply(change)
    return change.rollouts


async def roll_out(
    store: Store,
    evidence: Evidence,
    *,
    playbook_id: str,
    version: int,
    share: int,
    mode: str,
    actor: str,
    at: datetime,
) -> list[Rollout]:
    """Give a saved version `share` percent of its playbook's matching alerts in `mode`, as
    `rollout.plan_rollout` allows; each record written is audited `playbook.rolled_out`.

    Raises:
        RolloutRefused: the rules refuse it (see `plan_rollout`).
    """
    saved = {v.version: v.digest for v in await store.playbook_versions(playbook_id)}
    history = await store.rollouts(playbook_id)
    records = plan_rollout(
        current_state(history).get(playbook_id, {}),
        playbook_id=playbook_id,
        version=version,
        share=share,
        mode=mode,
        actor=actor,
        at=at,
        known=saved,
    )
    await store.apply(Change(rollouts=records, audit=_rolled_out(evidence, records, saved)))
    return records


async def roll_back(
    store: Store,
    evidence: Evidence,
    *,
    playbook_id: str,
    actor: str,
    at: datetime,
    version: int | None = None,
) -> list[Rollout]:
    """Withdraw `version` (without one: every live canary, or with none the current stable
    version in favour of the one before it), audited as `roll_out` is.

    Raises:
        RolloutRefused: there is nothing to roll back.
    """
    saved = {v.version: v.digest for v in await store.playbook_versions(playbook_id)}
    history = await store.rollouts(playbook_id)
    records = plan_rollback(
        current_state(history).get(playbook_id, {}),
        history,
        playbook_id=playbook_id,
        actor=actor,
        at=at,
        version=version,
    )
    await store.apply(Change(rollouts=records, audit=_rolled_out(evidence, records, saved)))
    return records


async def version_states(store: Store, playbook_id: str) -> list[VersionState]:
    """Every saved version of a playbook, oldest first, with its current share and mode."""
    state = current_state(await store.rollouts(playbook_id)).get(playbook_id, {})
    found = []
    for version in await store.playbook_versions(playbook_id):
        record = state.get(version.version)
        share = 0 if record is None else record.share
        mode = Mode.LIVE.value if record is None else record.mode
        stable = mode == Mode.LIVE and share >= FULL
        found.append(VersionState(version, share, mode, stable))
    return found


def _rolled_out(
    evidence: Evidence, records: list[Rollout], digests: Mapping[int, str]
) -> list[AuditEvent]:
    events = []
    for record in records:
        event = evidence.playbook_rolled_out(
            record.playbook_id,
            record.version,
            digests.get(record.version, ""),
            record.at,
            actor=record.actor,
            share=record.share,
            mode=record.mode,
        )
        if event is not None:
            events.append(event)
    return events


__all__ = [
    "RolloutRefused",
    "VersionState",
    "loaded_from",
    "new_version",
    "read_version",
    "roll_back",
    "roll_out",
    "save_version",
    "version_states",
]
