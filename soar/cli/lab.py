"""`soar lab`: the whole system on this machine. At this stage it checks every shipped playbook,
normalises every shipped sample alert and shows which playbooks each alert would start."""

from __future__ import annotations

from pathlib import Path

import click

import soar
from soar.config import load_settings
from soar.connectors.registry import load_registry
from soar.errors import AlertRejected, ExpressionError
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook

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
    for sample in samples:
        try:
            alerts = normalize(sample.read_bytes())
        except AlertRejected as exc:
            rejected += 1
            click.echo(f"  {_BAD} {sample}: rejected: {exc.code}: {exc.message}")
            continue
        for alert in alerts:
            count += 1
            click.echo(f"  {_OK}   {sample}")
            click.echo(f"         {_describe(alert)}")
            click.echo(f"         starts: {_matches(alert, loaded) or 'no playbook'}")

    bad_playbooks = len(problems) + sum(1 for r in results if not r.ok)
    click.secho("\nSummary", bold=True)
    click.echo(
        f"  {len(results) - sum(1 for r in results if not r.ok)} playbook(s) valid, "
        f"{bad_playbooks} with problems; {count} alert(s) normalised from {len(samples)} "
        f"sample file(s), {rejected} rejected"
    )
    raise SystemExit(0 if bad_playbooks == 0 and rejected == 0 else 1)


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
