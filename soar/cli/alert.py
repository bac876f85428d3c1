"""`soar alert`: what soar makes of one message, before any playbook sees it."""

from __future__ import annotations

import json
from typing import BinaryIO

import click

from soar.config import load_settings
from soar.errors import AlertRejected
from soar.ingest.limits import Limits
from soar.ingest.normalize import normalize
from soar.models.alert import Alert, AlertFormat

_FORMATS = ["auto", *(f.value for f in AlertFormat)]


@click.group()
def alert() -> None:
    """Inspect alerts as soar reads them."""


@alert.command("normalize")
@click.argument("source", metavar="FILE|-", type=click.File("rb"))
@click.option(
    "--format",
    "format_name",
    type=click.Choice(_FORMATS),
    default="auto",
    show_default=True,
    help="Read the message as this format instead of detecting it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=2),
    default=None,
    help="Refuse messages larger than this (default: ingest.max_message_bytes, 1 MiB).",
)
def normalize_command(
    source: BinaryIO, format_name: str, as_json: bool, max_bytes: int | None
) -> None:
    """Show the alert(s) soar makes of one message; exit 2 if it would be dead-lettered."""
    ingest = load_settings().ingest
    limits = Limits(
        max_bytes=max_bytes or ingest.max_message_bytes,
        max_depth=ingest.max_depth,
        max_batch=ingest.max_batch,
    )
    data = source.read(limits.max_bytes + 1)  # one byte over is enough to know it is too large
    forced = None if format_name == "auto" else AlertFormat(format_name)
    try:
        alerts = normalize(data, format=forced, limits=limits)
    except AlertRejected as exc:
        if as_json:
            error: dict[str, str | int | None] = {"code": exc.code.value, "message": exc.message}
            error |= {"field": exc.field, "index": exc.index}
            click.echo(json.dumps({"error": error}, indent=2))
        else:
            click.echo(f"error: {exc.code.value}: {exc.message}", err=True)
        raise SystemExit(2) from None
    if as_json:
        dumped = [a.model_dump(mode="json") for a in alerts]
        click.echo(json.dumps(dumped[0] if len(dumped) == 1 else dumped, indent=2))
        return
    for number, item in enumerate(alerts):
        if len(alerts) > 1:
            click.echo(f"--- alert {number} of {len(alerts)}")
        click.echo(_summary(item))


def _summary(item: Alert) -> str:
    lines = [
        f"id:        {item.id}",
        f"format:    {item.format.value} ({item.source})",
        f"title:     {item.title}",
        f"severity:  {item.severity.value}"
        + (f" (source: {item.source_severity})" if item.source_severity else ""),
        f"time:      {item.time.isoformat(timespec='milliseconds')}",
    ]
    if item.rule:
        lines.append(f"rule:      {item.rule}" + (f" [{item.rule_id}]" if item.rule_id else ""))
    if item.category:
        lines.append(f"category:  {item.category}")
    if item.techniques:
        lines.append(f"attack:    {', '.join(item.tactics)} {', '.join(item.techniques)}".strip())
    entities = {
        "users": [u.name + (f" ({u.domain})" if u.domain else "") for u in item.users],
        "hosts": [h.name or h.id or "" for h in item.hosts],
        "ips": [i.address + (f" ({i.role})" if i.role else "") for i in item.ips],
        "hashes": [f"{h.algorithm}:{h.value}" for h in item.hashes],
        "urls": [u.url for u in item.urls],
        "emails": [e.address for e in item.emails],
    }
    lines += [
        f"{name + ':':<10} {', '.join(values)}" for name, values in entities.items() if values
    ]
    text = "\n".join(lines)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
