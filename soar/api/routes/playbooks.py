"""Playbooks: list and read the loaded ones, validate or dry-run a draft, save a new version."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import orjson
from pydantic import JsonValue

from soar.api.auth import Role
from soar.api.errors import ApiError
from soar.api.models import (
    DiagnosticOut,
    Draft,
    DryRunOut,
    DryRunRequest,
    NewVersion,
    PlaybookDetail,
    PlaybookList,
    SavedVersion,
    ValidationOut,
)
from soar.api.routes.views import run_detail
from soar.api.routing import ALL_READERS, Call, Routes
from soar.engine import Engine
from soar.errors import AlertRejected
from soar.ingest.normalize import normalize
from soar.playbook.validate import LoadedPlaybook, Validation, validate_text
from soar.store import Change
from soar.store.memory import MemoryStore

routes = Routes("playbooks")
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
    """One playbook with its YAML source."""
    loaded = _loaded(call, call.param("playbook_id"))
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
async def new_version(call: Call) -> SavedVersion:
    """Save a new version of a playbook (or a new playbook): it must validate, keep its id and
    raise its `version`. New alerts start it; runs of older versions finish on theirs."""
    playbook_id = call.param("playbook_id")
    services = call.services
    engine = services.engine
    current = engine.playbooks.get(playbook_id)
    path = (
        Path(current.file)
        if current is not None
        else services.playbooks_dir / playbook_id / "playbook.yaml"
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
    if current is not None and loaded.playbook.version <= current.playbook.version:
        raise ApiError(
            409,
            "version_exists",
            f"version {current.playbook.version} is loaded: raise `version` above it",
        )
    await asyncio.to_thread(_write_atomically, path, call.body.source)
    engine.add_playbook(loaded)
    previous = None if current is None else (current.playbook.version, current.digest)
    event = engine.evidence.playbook_saved(
        playbook_id,
        loaded.playbook.version,
        loaded.digest,
        engine.clock.now(),
        author=call.actor,
        previous=previous,
    )
    if event is not None:
        await services.store.apply(Change(audit=[event]))
    return SavedVersion(id=playbook_id, version=loaded.playbook.version, digest=loaded.digest)


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
