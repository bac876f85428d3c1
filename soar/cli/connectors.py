"""`soar connectors`: the installed connectors, their actions and the actions' schemas."""

from __future__ import annotations

import json

import click

from soar.connectors.registry import load_registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Every action with its JSON schemas.")
def connectors(as_json: bool) -> None:
    """List installed connectors and their actions."""
    registry = load_registry()
    if as_json:
        document = {
            "connectors": [
                {
                    "name": c.name,
                    "doc": c.doc,
                    "actions": [spec.describe() for spec in c.actions.values()],
                }
                for c in sorted(registry.connectors.values(), key=lambda c: c.name)
            ],
            "broken": registry.broken,
        }
        click.echo(json.dumps(document, indent=2))
        return
    for connector in sorted(registry.connectors.values(), key=lambda c: c.name):
        click.echo(f"{connector.name}: {connector.doc}")
        for spec in connector.actions.values():
            flags = ["idempotent" if spec.idempotent else "not idempotent"]
            if spec.compensate:
                flags.append(f"undo: {spec.compensate}")
            summary = spec.doc.splitlines()[0] if spec.doc else ""
            click.echo(f"  {spec.qualified_name:<32} {summary}  [{', '.join(flags)}]")
    for name, reason in registry.broken.items():
        click.echo(f"{name}: FAILED TO LOAD: {reason}", err=True)
