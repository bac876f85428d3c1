"""`soar lab`: the whole system on this machine. At this stage it checks every shipped playbook,
normalises every shipped sample alert and shows which playbooks each alert would start."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import click

import soar
from soar.config import load_settings
from soar.connectors.registry import Registry, load_registry
from soar.engine import CURRENT_RUN, Engine, FakeClock
from soar.errors import AlertRejected, ExpressionError
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.models.run import RunStatus, StepStatus
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook
from soar.store.memory import MemoryStore

_OK = click.style("ok", fg="green")
_BAD = click.style("FAIL", fg="red", bold=True)


def default_playbooks_dir() -> Path:
    """The configured directory (`playbooks`, default `./playbooks`) when it exists, else the
    one shipped beside the package in a checkout."""
    configured = load_settings().playbooks
    if configured.is_dir():
        return configured
    return Path(soar.__file__).resolve().parent.parent / "playbooks"


@click.command()
@click.option(
    "--playbooks",
    "playbooks_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of playbooks, each with sample alerts in <id>/alerts/ (default ./playbooks).",
)
def lab(playbooks_dir: Path | None) -> None:
    """Run the lab on this machine with embedded defaults."""
    root = playbooks_dir or default_playbooks_dir()
    click.secho(f"soar lab {soar.__version__}: playbooks and sample alerts in {root}", bold=True)
    registry = load_registry()
    click.echo(f"connectors: {', '.join(sorted(registry.connectors)) or 'none'}")
    for name, reason in registry.broken.items():
        click.echo(f"  connector {name} failed to load: {reason}")

    files, problems = find_playbook_files([root])
    results = validate_files(files, registry=registry)
    click.secho("\nPlaybooks", bold=True)
    loaded: list[LoadedPlaybook] = []
    for problem in problems:
        click.echo(f"  {_BAD} {problem}")
    for result in results:
        if result.loaded is not None:
            playbook = result.loaded.playbook
            loaded.append(result.loaded)
            steps = len(result.loaded.graph.nodes)
            click.echo(
                f"  {_OK}   {playbook.id} v{playbook.version}: {playbook.name} ({steps} steps)"
            )
        else:
            click.echo(f"  {_BAD} {result.file}")
            for diagnostic in result.diagnostics:
                click.echo(f"         {diagnostic}")

    click.secho("\nSample alerts", bold=True)
    samples = sorted(root.glob("*/alerts/*.json"))
    rejected = 0
    count = 0
    normalised: list[Alert] = []
    for sample in samples:
        try:
            alerts = normalize(sample.read_bytes())
        except AlertRejected as exc:
            rejected += 1
            click.echo(f"  {_BAD} {sample}: rejected: {exc.code}: {exc.message}")
            continue
        for alert in alerts:
            count += 1
            normalised.append(alert)
            click.echo(f"  {_OK}   {sample}")
            click.echo(f"         {_describe(alert)}")
            click.echo(f"         starts: {_matches(alert, loaded) or 'no playbook'}")

    click.secho("\nRuns (core connector, memory store, simulated time)", bold=True)
    outcomes = asyncio.run(_run_all(normalised, loaded, registry))
    failed_runs = 0
    for line, ok in outcomes:
        if line.startswith("      log:"):
            click.echo(f"    {line}")
            continue
        failed_runs += 0 if ok else 1
        click.echo(f"  {_OK if ok else _BAD}   {line}")

    runs = sum(1 for line, _ in outcomes if not line.startswith("      log:"))
    bad_playbooks = len(problems) + sum(1 for r in results if not r.ok)
    click.secho("\nSummary", bold=True)
    click.echo(
        f"  {len(results) - sum(1 for r in results if not r.ok)} playbook(s) valid, "
        f"{bad_playbooks} with problems; {count} alert(s) normalised from {len(samples)} "
        f"sample file(s), {rejected} rejected; {runs} run(s), {runs - failed_runs} completed"
    )
    raise SystemExit(0 if bad_playbooks == 0 and rejected == 0 and failed_runs == 0 else 1)


async def _run_all(
    alerts: list[Alert], playbooks: list[LoadedPlaybook], registry: Registry
) -> list[tuple[str, bool]]:
    """Every sample alert through every playbook it matches, timers fast-forwarded."""
    said: list[tuple[str | None, str]] = []
    action_log = logging.getLogger("soar.action")
    action_log.propagate = False  # what core.log says is shown under its run instead
    action_log.addHandler(_Collect(said))
    action_log.setLevel(logging.INFO)
    clock = FakeClock()
    counter = iter(range(1, 1_000_000))
    engine = Engine(
        MemoryStore(), registry, playbooks, clock=clock, new_id=lambda: f"lab-{next(counter)}"
    )
    lines: list[tuple[str, bool]] = []
    try:
        for alert in alerts:
            for run_id in await engine.submit_alert(alert):
                await _fast_forward(engine, clock, run_id)
                snapshot = await engine.store.load_run(run_id)
                if snapshot is None:
                    continue
                run = snapshot.run
                done = sum(1 for s in snapshot.steps.values() if s.status is StepStatus.SUCCEEDED)
                skipped = sum(1 for s in snapshot.steps.values() if s.status is StepStatus.SKIPPED)
                text = (
                    f"{run.playbook_id} on {alert.title[:50]!r}: {run.status.value} "
                    f"({done} step(s) succeeded, {skipped} skipped)"
                )
                lines.append(
                    (
                        text + (f": {run.error}" if run.error else ""),
                        run.status is RunStatus.COMPLETED,
                    )
                )
                lines.extend((f"      log: {m}", True) for r, m in said if r == run_id)
    finally:
        await engine.stop()
    return lines


class _Collect(logging.Handler):
    def __init__(self, into: list[tuple[str | None, str]]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append((CURRENT_RUN.get(), record.getMessage()))


async def _fast_forward(engine: Engine, clock: FakeClock, run_id: str) -> None:
    """Let the run go on, jumping the clock to each timer, until it ends (or a day passes)."""
    deadline = clock.now() + timedelta(days=1)
    while True:
        for _ in range(200):
            await asyncio.sleep(0)
        executor = engine.executors.get(run_id)
        if executor is None or executor.finished.done():
            return
        wake = clock.next_wake
        if wake is None or wake > deadline:
            return
        await clock.advance(wake - clock.now())


def _describe(alert: Alert) -> str:
    entities = []
    if alert.users:
        entities.append("users " + ", ".join(u.name for u in alert.users))
    if alert.hosts:
        entities.append("hosts " + ", ".join(h.name or h.id or "?" for h in alert.hosts))
    if alert.ips:
        entities.append("ips " + ", ".join(i.address for i in alert.ips))
    when = alert.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = f"[{alert.format}] {alert.severity.value} {when} {alert.title!r}"
    return head + (" | " + "; ".join(entities) if entities else "")


def _matches(alert: Alert, playbooks: list[LoadedPlaybook]) -> str:
    names = []
    variables = {"alert": alert.context()}
    for loaded in playbooks:
        expression = loaded.expressions.get(("trigger", "match"))
        if expression is None:
            continue
        try:
            if expression.evaluate(variables):
                names.append(loaded.playbook.id)
        except ExpressionError as exc:
            names.append(f"{loaded.playbook.id} (match failed: {exc.message})")
    return ", ".join(names)
