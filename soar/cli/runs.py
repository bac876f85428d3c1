"""`soar runs`: list runs, show one run's timeline, abort a run, retry a failed run from a step."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict

import click

from soar.cli.auditing import cli_actor, optional_checkpointer
from soar.cli.secrets import secrets_or_exit
from soar.config import load_settings
from soar.connectors.registry import load_registry
from soar.engine import Engine
from soar.errors import ConflictError
from soar.models.run import Run, RunStatus
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.store import RunFilter, open_store

_ABORT_WAIT_S = 30.0  # how long `runs abort` waits for another worker to carry it out


@click.group()
def runs() -> None:
    """Inspect and operate on runs in the configured store."""


@runs.command("list")
@click.option("--playbook", help="Only runs of this playbook.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs in this status (repeatable).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
def list_runs(playbook: str | None, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Runs, newest first."""
    run_filter = RunFilter(
        playbook_id=playbook, statuses=tuple(RunStatus(s) for s in statuses), limit=limit
    )
    found = asyncio.run(_list(run_filter))
    if as_json:
        click.echo(json.dumps([_run_json(r) for r in found], indent=2))
        return
    for run in found:
        started = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        version = f"{run.playbook_id} v{run.playbook_version}"
        line = f"{run.id:<34} {started}  {run.status.value:<12} {version}"
        click.echo(line + (f"  {run.error}" if run.error else ""))


async def _list(run_filter: RunFilter) -> list[Run]:
    async with open_store(load_settings().store) as store:
        return await store.list_runs(run_filter)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show_run(run_id: str, as_json: bool) -> None:
    """One run: its steps and its timeline."""
    document = asyncio.run(_show(run_id))
    if document is None:
        raise click.ClickException(f"no run {run_id}")
    if as_json:
        click.echo(json.dumps(document, indent=2, default=str))
        return
    run = document["run"]
    assert isinstance(run, dict)  # noqa: S101
    click.secho(
        f"run {run['id']}: {run['playbook_id']} v{run['playbook_version']} {run['status']}",
        bold=True,
    )
    if run.get("error"):
        click.echo(f"  error: {run['error']}")
    timeline = document["timeline"]
    assert isinstance(timeline, list)  # noqa: S101
    for item in timeline:
        assert isinstance(item, dict)  # noqa: S101
        label = item.get("step") or "run"
        attempt = f" (attempt {item['attempt']})" if item.get("attempt") else ""
        detail = f"  {json.dumps(item['data'])}" if item.get("data") else ""
        click.echo(f"  {item['seq']:>4}  {item['at']}  {label:<28} {item['kind']}{attempt}{detail}")


async def _show(run_id: str) -> dict[str, object] | None:
    async with open_store(load_settings().store) as store:
        snapshot = await store.load_run(run_id)
        if snapshot is None:
            return None
        transitions = await store.transitions(run_id)
    return {
        "run": _run_json(snapshot.run),
        "steps": {k: _jsonable(asdict(s)) for k, s in snapshot.steps.items()},
        "timeline": [_jsonable(asdict(t)) for t in transitions],
    }


@runs.command("resume")
@click.option("--cron/--no-cron", default=True, show_default=True, help="Also run cron schedules.")
def resume_runs(cron: bool) -> None:
    """Drive every unfinished run in the store to its end (after a crash, say), here.

    With --cron (the default) the cron schedules keep running and the command keeps going
    until interrupted; with --no-cron it ends when the resumed runs have ended.
    """
    resumed, unresumable = asyncio.run(_resume(cron))
    click.echo(f"{resumed} run(s) resumed and driven to their end")
    for run_id, reason in unresumable.items():
        click.echo(f"not resumed: {run_id}: {reason}", err=True)


async def _resume(cron: bool) -> tuple[int, dict[str, str]]:
    async with configured_engine() as engine:
        resumed = await engine.start(cron=cron)
        if cron and engine.has_schedules:
            await asyncio.Event().wait()  # until interrupted
        await engine.wait_idle()
        return len(resumed), dict(engine.unresumable)


@contextlib.asynccontextmanager
async def configured_engine() -> AsyncIterator[Engine]:
    """An engine on the configured store with the configured playbooks; stopped on exit."""
    settings = load_settings()
    registry = load_registry()
    files, _ = (
        find_playbook_files([settings.playbooks]) if settings.playbooks.is_dir() else ([], [])
    )
    loaded = [r.loaded for r in validate_files(files, registry=registry) if r.loaded is not None]
    async with open_store(settings.store) as store:
        engine = Engine(
            store,
            registry,
            loaded,
            directory=settings.directory,
            connector_settings=settings.connectors,
            audit=settings.audit.enabled,
            secrets=secrets_or_exit(settings),
            limits=settings.limits,
            worker=f"{settings.worker_name}-cli",
            lease_ttl=settings.lease_ttl,
        )
        checkpointer = optional_checkpointer(settings, store)
        try:
            yield engine
        finally:
            await engine.stop()
            if checkpointer is not None:
                await checkpointer.stop()


@runs.command("abort")
@click.argument("run_id")
@click.option("--reason", default="aborted by an operator", show_default=True)
def abort_run(run_id: str, reason: str) -> None:
    """Abort a run that no worker is driving: its completed steps are compensated."""
    status = asyncio.run(_operate(run_id, abort=reason))
    click.echo(f"run {run_id}: {status}")


@runs.command("retry")
@click.argument("run_id")
@click.option(
    "--from", "from_step", default=None, help="Step to resume from (default: the first failed one)."
)
def retry_run(run_id: str, from_step: str | None) -> None:
    """Run a failed run again from a step, without repeating the effects before it."""
    status = asyncio.run(_operate(run_id, retry_from=from_step, retry=True))
    click.echo(status)


async def _operate(
    run_id: str, *, abort: str | None = None, retry: bool = False, retry_from: str | None = None
) -> str:
    async with configured_engine() as engine:
        try:
            if retry:
                new_id = await engine.retry_run(run_id, from_step=retry_from, actor=cli_actor())
                run = await engine.wait_run(new_id)
                return f"run {new_id} (retry of {run_id}): {run.status.value}" + (
                    f": {run.error}" if run.error else ""
                )
            assert abort is not None  # noqa: S101
            try:
                await engine.resume(run_id)  # a run nobody drives: this command drives it
            except ConflictError:  # driven by a live worker (or ended: the request says so)
                request = await engine.request(
                    run_id, "abort", {"reason": abort}, actor=cli_actor()
                )
                item = await engine.outcome(request, wait=_ABORT_WAIT_S)
                if item is None or item.done_at is None:
                    return f"abort requested ({request}): the worker driving the run will do it"
                outcome = item.outcome if isinstance(item.outcome, dict) else {}
                if outcome.get("ok") is not True:
                    raise ConflictError(str(outcome.get("error") or "refused")) from None
                return await _settled(engine, run_id)
            await engine.abort(run_id, abort, actor=cli_actor())
            run = await engine.wait_run(run_id)
            return run.status.value
        except ConflictError as exc:
            raise click.ClickException(str(exc)) from None


async def _settled(engine: Engine, run_id: str) -> str:
    """The run's status once its compensations are done (or as it stands after a while)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _ABORT_WAIT_S
    while True:
        snapshot = await engine.store.load_run(run_id)
        assert snapshot is not None  # noqa: S101 - runs are never deleted
        if snapshot.run.status.is_terminal or loop.time() > deadline:
            return snapshot.run.status.value
        await asyncio.sleep(0.05)


def _run_json(run: Run) -> dict[str, object]:
    return _jsonable(asdict(run))


def _jsonable(value: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(value, default=str))  # type: ignore[no-any-return]
