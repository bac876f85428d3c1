"""`soar run`: one playbook on one alert, live with a step timeline, or as a dry run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click
from pydantic import JsonValue

from soar.cli.auditing import optional_checkpointer, tracing_for
from soar.cli.secrets import secrets_or_exit
from soar.config import Settings, load_settings
from soar.connectors.catalog import load_catalog
from soar.connectors.registry import Registry, load_registry
from soar.connectors.testing import recording_registry
from soar.engine import Engine, RunExecutor
from soar.errors import AlertRejected, BadInputs
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.models.run import RunStatus, Transition, TransitionKind, TriggerKind
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook
from soar.store import open_store

_STYLE = {
    TransitionKind.STEP_SUCCEEDED: "green",
    TransitionKind.STEP_FAILED: "red",
    TransitionKind.COMPENSATION_FAILED: "red",
    TransitionKind.STEP_COMPENSATED: "yellow",
    TransitionKind.STEP_WAITING: "cyan",
    TransitionKind.RUN_FINISHED: "bright_white",
}


@click.command("run")
@click.argument("playbook", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--alert", "alert_file", type=click.File("rb"), help="Alert file (any format) or -.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=JSON", help="A playbook input.")
@click.option("--dry-run", is_flag=True, help="Print the planned effects; call nothing.")
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Action catalog (soar connectors --json) for connectors not installed here; "
    "with --dry-run only, since nothing can be called through a catalog.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def run_command(
    playbook: Path,
    alert_file: BinaryIO | None,
    inputs: tuple[str, ...],
    dry_run: bool,
    catalogs: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Run PLAYBOOK once, on the alert in --alert (or by hand, with --input)."""
    settings = load_settings()
    registry = load_registry()
    if catalogs and not dry_run:
        raise click.UsageError("--catalog works with --dry-run only")
    for catalog in catalogs:
        registry.add_catalog(load_catalog(catalog))
    target, others = load_playbook_set(playbook, settings, registry)
    if catalogs:  # catalog actions get stand-in declarations; a dry run never calls them
        registry, _ = recording_registry(registry, {})
    alerts: list[Alert | None] = [None]
    if alert_file is not None:
        try:
            alerts = list(normalize(alert_file.read()))
        except AlertRejected as exc:
            raise click.ClickException(f"alert rejected: {exc.code.value}: {exc.message}") from None
    values = dict(_parse_input(item) for item in inputs)
    try:
        with contextlib.nullcontext() if as_json else _action_logs_in_timeline():
            code = asyncio.run(
                _run(target, others, alerts, values, settings, registry, dry_run, as_json)
            )
    except BadInputs as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted: the run is kept in the store as it stands; "
            "`soar runs resume` continues it, `soar runs abort RUN` undoes it",
            err=True,
        )
        sys.exit(130)
    sys.exit(code)


def load_playbook_set(
    playbook: Path, settings: Settings, registry: Registry
) -> tuple[LoadedPlaybook, list[LoadedPlaybook]]:
    """The playbook in `playbook`, validated with the configured ones (its sub-playbooks)."""
    library, _ = (
        find_playbook_files([settings.playbooks]) if settings.playbooks.is_dir() else ([], [])
    )
    files = [playbook, *(p for p in library if p.resolve() != playbook.resolve())]
    results = validate_files(files, registry=registry)
    first = results[0]
    if first.loaded is None:
        for diagnostic in first.diagnostics:
            click.echo(str(diagnostic), err=True)
        raise click.ClickException(f"{playbook} does not validate")
    return first.loaded, [r.loaded for r in results[1:] if r.loaded is not None]


def _parse_input(item: str) -> tuple[str, JsonValue]:
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{item!r}: write NAME=VALUE", param_hint="--input")
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        value = text  # plain text needs no quotes
    return name, value


async def _run(
    target: LoadedPlaybook,
    others: list[LoadedPlaybook],
    alerts: list[Alert | None],
    inputs: dict[str, JsonValue],
    settings: Settings,
    registry: Registry,
    dry_run: bool,
    as_json: bool,
) -> int:
    url = "memory://" if dry_run else settings.store
    results = []
    tracing = tracing_for(settings)
    async with open_store(url) as store:
        engine = Engine(
            store,
            registry,
            [*others, target],
            directory=settings.directory,
            connector_settings=settings.connectors,
            audit=settings.audit.enabled,
            tracing=tracing,
            secrets=secrets_or_exit(settings),
            limits=settings.limits,
        )
        checkpointer = None if dry_run else optional_checkpointer(settings, store)
        seen: dict[str, RunExecutor] = {}

        def remember(executor: RunExecutor, _: list[Transition]) -> None:
            seen.setdefault(executor.run.id, executor)

        engine.observe(remember)
        if not as_json:
            engine.observe(_print_transitions)
        for alert in alerts:
            trigger = TriggerKind.ALERT if alert is not None else TriggerKind.MANUAL
            run_id = await engine.start_run(
                target, alert=alert, inputs=inputs, trigger=trigger, dry_run=dry_run
            )
            run = await engine.wait_run(run_id)
            executor = seen.get(run_id)
            effects = executor.effects if executor is not None else []
            results.append(
                {
                    "run_id": run_id,
                    "status": run.status.value,
                    "error": run.error,
                    "effects": effects,
                }
            )
            if dry_run and not as_json:
                _print_effects(effects)
        await engine.wait_idle()
        await engine.stop()
        if checkpointer is not None:
            await checkpointer.stop()  # signs what these runs recorded
    tracing.shutdown()
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    ok = all(r["status"] == RunStatus.COMPLETED.value for r in results)
    return 0 if ok else 1


def _print_transitions(executor: RunExecutor, transitions: list[Transition]) -> None:
    for transition in transitions:
        when = transition.at.strftime("%H:%M:%S.%f")[:-3]
        label = transition.step or f"run {executor.run.id[:8]}"
        text = transition.kind.value.replace("_", " ")
        if transition.attempt:
            text += f" (attempt {transition.attempt})"
        data = transition.data if isinstance(transition.data, dict) else {}
        if transition.kind is TransitionKind.RUN_STARTED:
            text += f" {data.get('playbook')} v{data.get('version')}"
        elif transition.kind is TransitionKind.RUN_FINISHED:
            text += f": {data.get('status')}" + (f" ({data['error']})" if data.get("error") else "")
        elif data.get("error"):
            text += f": {data['error']}"
        if transition.kind is TransitionKind.STEP_WAITING and data.get("due_at"):
            text += f" until {data['due_at']}"
        style = _STYLE.get(transition.kind)
        click.echo(f"  {when}  {label:<28} " + (click.style(text, fg=style) if style else text))


class _Echo(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"  {'':12}  {'':<28} log: {record.getMessage()}")


@contextlib.contextmanager
def _action_logs_in_timeline() -> Iterator[None]:
    """What actions log (core.log, connectors' messages) appears in the timeline while the run
    is shown, instead of going to the log (stderr); `--json` keeps stdout to the document."""
    actions = logging.getLogger("soar.action")
    handler = _Echo()
    level, propagate = actions.level, actions.propagate
    actions.addHandler(handler)
    actions.setLevel(logging.INFO)
    actions.propagate = False
    try:
        yield
    finally:
        actions.removeHandler(handler)
        actions.setLevel(level)
        actions.propagate = propagate


def _print_effects(effects: list[dict[str, JsonValue]]) -> None:
    click.secho("\nPlanned effects (dry run: nothing was called)", bold=True)
    for number, effect in enumerate(effects, 1):
        target = (
            f" on {effect['target']} {effect['target_value']}" if effect.get("target_value") else ""
        )
        click.echo(f"  {number}. {effect['step']}: {effect['action']}{target}")
        click.echo(f"     {json.dumps(effect['inputs'], ensure_ascii=False)}")
