"""Playbooks: list and read the loaded ones, validate or dry-run a draft, save a new version,
list the saved versions with their shares, roll a version out."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

import orjson
from pydantic import JsonValue

from soar.api.auth import Role
from soar.api.errors import ApiError
from soar.api.models import (
    CompareQuery,
    DiagnosticOut,
    Draft,
    DryRunOut,
    DryRunRequest,
    NewVersion,
    PlaybookDetail,
    PlaybookList,
    RolledOut,
    RolloutOut,
    RolloutRequest,
    SavedVersion,
    ValidationOut,
    VersionList,
    VersionOut,
)
from soar.api.routes.views import run_detail
from soar.api.routing import ALL_READERS, Call, Routes
from soar.engine import Engine
from soar.engine.compare import Comparison, compare
from soar.engine.versions import (
    RolloutRefused,
    VersionState,
    new_version,
    read_version,
    roll_out,
    save_version,
    version_states,
)
from soar.errors import AlertRejected, ConflictError
from soar.ingest.normalize import normalize
from soar.playbook.validate import LoadedPlaybook, Validation, validate_text
from soar.store.base import PlaybookVersion as PlaybookVersionRow
from soar.store.memory import MemoryStore

routes = Routes("playbooks")
_log = logging.getLogger("soar.api")
AUTHORS = frozenset({Role.AUTHOR})
_DRY_RUN_S = 10.0


def _summary(loaded: LoadedPlaybook) -> dict[str, JsonValue]:
    playbook = loaded.playbook
    return {
        "id": playbook.id,
        "name": playbook.name,
        "version": playbook.version,
        "digest": loaded.digest,
        "description": playbook.description,
        "file": loaded.file,
        "trigger": playbook.trigger.model_dump(mode="json", exclude_defaults=True),
        "steps": len(playbook.steps),
    }


def _validate(call: Call, source: str, file: str) -> Validation:
    known = {p.playbook.id: p.playbook for p in call.services.engine.playbooks.values()}
    return validate_text(source, file=file, registry=call.services.registry, known_playbooks=known)


def _diagnostics(result: Validation) -> list[DiagnosticOut]:
    return [
        DiagnosticOut(file=d.file, line=d.line, column=d.col, message=d.message)
        for d in result.diagnostics
    ]


def _loaded(call: Call, playbook_id: str) -> LoadedPlaybook:
    loaded = call.services.engine.playbooks.get(playbook_id)
    if loaded is None:
        raise ApiError(404, "not_found", f"no playbook {playbook_id!r} is loaded")
    return loaded


@routes.get("/playbooks", roles=ALL_READERS, response=PlaybookList)
async def list_playbooks(call: Call) -> PlaybookList:
    """Every loaded playbook, its current version."""
    found = sorted(call.services.engine.playbooks.values(), key=lambda p: p.playbook.id)
    return PlaybookList.model_validate({"playbooks": [_summary(p) for p in found]})


@routes.get("/playbooks/{playbook_id}", roles=ALL_READERS, response=PlaybookDetail, errors=(404,))
async def get_playbook(call: Call) -> PlaybookDetail:
    """One playbook, the version new alerts start (the stable one), with its YAML source."""
    loaded = _loaded(call, call.param("playbook_id"))
    stored = await call.services.store.playbook_version(loaded.digest)
    if stored is not None:
        return PlaybookDetail.model_validate({**_summary(loaded), "source": stored.source})
    try:
        source = await asyncio.to_thread(Path(loaded.file).read_text, encoding="utf-8")
    except OSError as exc:
        raise ApiError(
            404, "source_missing", f"the playbook's file cannot be read: {exc}"
        ) from None
    return PlaybookDetail.model_validate({**_summary(loaded), "source": source})


@routes.post("/playbooks/validate", roles=AUTHORS, body=Draft, response=ValidationOut)
async def validate(call: Call) -> ValidationOut:
    """Validate a draft: every problem as file, line, column and message, as `soar validate`."""
    result = _validate(call, call.body.source, call.body.file)
    return ValidationOut(valid=result.ok, diagnostics=_diagnostics(result))


@routes.post(
    "/playbooks/dry-run", roles=AUTHORS, body=DryRunRequest, response=DryRunOut, errors=(422,)
)
async def dry_run(call: Call) -> DryRunOut:
    """Run a draft in dry-run mode against a pasted alert, on a throwaway store: the planned
    steps, nothing done."""
    body: DryRunRequest = call.body
    result = _validate(call, body.source, body.file)
    if result.loaded is None:
        return DryRunOut(valid=False, diagnostics=_diagnostics(result), run=None)
    try:
        alert = normalize(orjson.dumps(body.alert))[0]
    except AlertRejected as exc:
        raise ApiError(422, "alert_rejected", str(exc), [_rejection(exc)]) from None
    services = call.services
    engine = Engine(
        MemoryStore(),
        services.registry,
        [*services.engine.playbooks.values(), result.loaded],
        directory=services.engine.directory,
        audit=False,
    )
    try:
        async with asyncio.timeout(_DRY_RUN_S):
            run_id = await engine.start_run(result.loaded, alert=alert, dry_run=True)
            await engine.wait_run(run_id)
        detail = await run_detail(engine, run_id)
    except TimeoutError:
        raise ApiError(422, "dry_run_timeout", f"the dry run took over {_DRY_RUN_S:g}s") from None
    finally:
        await engine.stop()
    return DryRunOut(valid=True, diagnostics=[], run=detail)


def _rejection(exc: AlertRejected) -> dict[str, JsonValue]:
    return {"code": exc.code, "field": exc.field, "index": exc.index}


@routes.post(
    "/playbooks/{playbook_id}/versions",
    roles=AUTHORS,
    body=NewVersion,
    response=SavedVersion,
    status=201,
    errors=(409, 422),
)
async def new_version_route(call: Call) -> SavedVersion:
    """Save a new version of a playbook (or a new playbook): it must validate, keep its id and
    raise its `version`. Saving does not roll it out: the playbook's first version is live at
    once, any later one waits for `POST /playbooks/{id}/rollout`."""
    playbook_id = call.param("playbook_id")
    services = call.services
    engine = services.engine
    current = engine.playbooks.get(playbook_id)
    file = engine.playbook_file(playbook_id)
    path = (
        Path(file) if file is not None else services.playbooks_dir / playbook_id / "playbook.yaml"
    )
    result = _validate(call, call.body.source, str(path))
    loaded = result.loaded
    if loaded is None:
        raise ApiError(
            422,
            "invalid_playbook",
            f"the playbook has {len(result.diagnostics)} problem(s)",
            [d.model_dump() for d in _diagnostics(result)],
        )
    if loaded.playbook.id != playbook_id:
        raise ApiError(
            422, "id_mismatch", f"the source's id is {loaded.playbook.id!r}, not {playbook_id!r}"
        )
    saved = await _saved_with_current(call, playbook_id)
    highest = max(
        [v.version for v in saved] + ([current.playbook.version] if current is not None else []),
        default=0,
    )
    if loaded.playbook.version <= highest:
        raise ApiError(
            409,
            "version_exists",
            f"version {highest} is saved: raise `version` above it",
        )
    version = new_version(loaded, call.body.source, author=call.actor, at=engine.clock.now())
    previous = None if current is None else (current.playbook.version, current.digest)
    try:
        records = await save_version(services.store, engine.evidence, version, previous=previous)
    except ConflictError as exc:
        raise ApiError(409, "version_exists", str(exc)) from None
    try:
        await asyncio.to_thread(_write_atomically, path, call.body.source)
    except OSError as exc:  # a read-only playbooks directory: the store holds the version
        _log.info("%s v%d saved in the store only: %s", playbook_id, version.version, exc)
    engine.add_version(loaded)
    if current is None:
        engine.add_playbook(loaded)
    await engine.refresh_rollouts()
    return SavedVersion(
        id=playbook_id, version=version.version, digest=version.digest, live=bool(records)
    )


@routes.get(
    "/playbooks/{playbook_id}/versions", roles=ALL_READERS, response=VersionList, errors=(404,)
)
async def list_versions(call: Call) -> VersionList:
    """Every saved version of a playbook, oldest first, with its current share and mode."""
    playbook_id = call.param("playbook_id")
    states = await version_states(call.services.store, playbook_id)
    if not states and playbook_id not in call.services.engine.playbooks:
        raise ApiError(404, "not_found", f"no playbook {playbook_id!r} is loaded or saved")
    return VersionList(id=playbook_id, versions=[_version_out(s) for s in states])


@routes.get(
    "/playbooks/{playbook_id}/compare",
    roles=ALL_READERS,
    query=CompareQuery,
    response=Comparison,
    errors=(404, 422),
)
async def compare_versions(call: Call) -> Comparison:
    """How each version did over the newest runs: runs, success rate, p50/p99 duration,
    effects, and the same per step (A/B tests and canaries)."""
    playbook_id = call.param("playbook_id")
    query: CompareQuery = call.query
    found = await compare(call.services.store, playbook_id, since=query.since, limit=query.limit)
    if not found.versions and playbook_id not in call.services.engine.playbooks:
        raise ApiError(404, "not_found", f"no playbook {playbook_id!r} is loaded or has runs")
    return found


@routes.post(
    "/playbooks/{playbook_id}/rollout",
    roles=AUTHORS,
    body=RolloutRequest,
    response=RolledOut,
    errors=(404, 409),
)
async def rollout(call: Call) -> RolledOut:
    """Give a saved version `share` percent of the playbook's matching alerts, `live` or as a
    `dry_run` beside the live choice. Live at 100 promotes it; share 0 withdraws it. 409 when
    the rollout rules refuse (unknown version, live canaries above 100 % together)."""
    playbook_id = call.param("playbook_id")
    services = call.services
    engine = services.engine
    saved = await _saved_with_current(call, playbook_id)
    if not saved:
        raise ApiError(404, "not_found", f"no playbook {playbook_id!r} is loaded or saved")
    body: RolloutRequest = call.body
    try:
        records = await roll_out(
            services.store,
            engine.evidence,
            playbook_id=playbook_id,
            version=body.version,
            share=body.share,
            mode=body.mode,
            actor=call.actor,
            at=engine.clock.now(),
        )
    except RolloutRefused as exc:
        raise ApiError(409, "rollout_refused", str(exc)) from None
    await engine.refresh_rollouts()
    states = await version_states(services.store, playbook_id)
    return RolledOut.model_validate(
        {
            "id": playbook_id,
            "records": [
                RolloutOut.model_validate(
                    {
                        "version": r.version,
                        "share": r.share,
                        "mode": r.mode,
                        "actor": r.actor,
                        "at": r.at,
                    }
                )
                for r in records
            ],
            "versions": [_version_out(s) for s in states],
        }
    )


async def _saved_with_current(call: Call, playbook_id: str) -> list[PlaybookVersionRow]:
    """The playbook's saved versions; when none is saved yet but the engine has one loaded
    (from a file), that one is saved first, as the stable version, so that the history starts
    with what runs now."""
    store = call.services.store
    engine = call.services.engine
    saved = await store.playbook_versions(playbook_id)
    current = engine.playbooks.get(playbook_id)
    if saved or current is None:
        return saved
    base = await asyncio.to_thread(
        read_version, current, author=f"file:{current.file}", at=engine.clock.now()
    )
    if base is None:
        return saved
    await save_version(store, engine.evidence, base)
    return await store.playbook_versions(playbook_id)


def _version_out(state: VersionState) -> VersionOut:
    version = state.version
    return VersionOut.model_validate(
        {
            "version": version.version,
            "digest": version.digest,
            "author": version.author,
            "created_at": version.created_at,
            "share": state.share,
            "mode": state.mode,
            "stable": state.stable,
        }
    )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
