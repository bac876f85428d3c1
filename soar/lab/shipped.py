"""What ships with soar, checked before the lab starts anything: every playbook validates, every
sample alert (`<playbook>/alerts/*.json`) normalises, and which playbooks each alert starts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click

import soar
from soar.connectors.registry import Registry
from soar.errors import AlertRejected, ExpressionError
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook

Say = Callable[[str], None]

OK = click.style("ok", fg="green")
BAD = click.style("FAIL", fg="red", bold=True)


def default_playbooks_dir() -> Path:
    """The playbooks shipped beside the package in a checkout (`<repo>/playbooks`), else
    `./playbooks`."""
    shipped = Path(soar.__file__).resolve().parent.parent / "playbooks"
    return shipped if shipped.is_dir() else Path("playbooks")


@dataclass(frozen=True, slots=True)
class Sample:
    """One shipped sample message: its bytes as a producer sends them, and what soar makes of
    them (one alert, or several for a batch)."""

    path: Path
    data: bytes
    alerts: tuple[Alert, ...]


@dataclass(slots=True)
class Shipped:
    """The outcome of the check: the playbooks that loaded, the samples that normalised, and
    how many things were broken (the lab refuses to start on any)."""

    root: Path
    playbooks: list[LoadedPlaybook] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    broken: int = 0

    @property
    def ok(self) -> bool:
        return self.broken == 0 and bool(self.playbooks)


def check_shipped(root: Path, registry: Registry, say: Say) -> Shipped:
    """Validate the playbooks under `root` and normalise their sample alerts, saying each
    outcome; nothing is run."""
    say(
        click.style(
            f"soar lab {soar.__version__}: playbooks and sample alerts in {root}", bold=True
        )
    )
    say(f"connectors: {', '.join(sorted(registry.connectors)) or 'none'}")
    for name, reason in registry.broken.items():
        say(f"  connector {name} failed to load: {reason}")
    shipped = Shipped(root)

    files, problems = find_playbook_files([root])
    results = validate_files(files, registry=registry)
    say(click.style("\nPlaybooks", bold=True))
    for problem in problems:
        shipped.broken += 1
        say(f"  {BAD} {problem}")
    for result in results:
        if result.loaded is None:
            shipped.broken += 1
            say(f"  {BAD} {result.file}")
            for diagnostic in result.diagnostics:
                say(f"         {diagnostic}")
            continue
        playbook = result.loaded.playbook
        shipped.playbooks.append(result.loaded)
        steps = len(result.loaded.graph.nodes)
        say(f"  {OK}   {playbook.id} v{playbook.version}: {playbook.name} ({steps} steps)")

    say(click.style("\nSample alerts", bold=True))
    paths = sorted(root.glob("*/alerts/*.json"))
    count = 0
    for path in paths:
        data = path.read_bytes()
        try:
            alerts = normalize(data)
        except AlertRejected as exc:
            shipped.broken += 1
            say(f"  {BAD} {path}: rejected: {exc.code}: {exc.message}")
            continue
        shipped.samples.append(Sample(path, data, tuple(alerts)))
        for alert in alerts:
            count += 1
            say(f"  {OK}   {path}")
            say(f"         {describe(alert)}")
            say(
                f"         starts: {', '.join(matching(alert, shipped.playbooks)) or 'no playbook'}"
            )
    if not paths:
        say(f"  {BAD} no sample alerts in {root}/*/alerts/")

    valid = len(shipped.playbooks)
    say(
        f"\n  {valid} playbook(s) valid, {len(problems) + len(results) - valid} with problems; "
        f"{count} alert(s) normalised from {len(paths)} sample file(s), "
        f"{len(paths) - len(shipped.samples)} rejected"
    )
    return shipped


def describe(alert: Alert) -> str:
    """One line: format, severity, time, title and the entities named."""
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


def matching(alert: Alert, playbooks: Iterable[LoadedPlaybook]) -> list[str]:
    """The ids of the playbooks whose trigger matches `alert` now (a failed match is named)."""
    names = []
    variables = {"alert": alert.context()}
    for loaded in playbooks:
        expression = loaded.expressions.get(("trigger", "match"))
        playbook = loaded.playbook
        if expression is None or not playbook.enabled or playbook.trigger.event is not None:
            continue
        try:
            if expression.evaluate(variables):
                names.append(playbook.id)
        except ExpressionError as exc:
            names.append(f"{playbook.id} (match failed: {exc.message})")
    return names
