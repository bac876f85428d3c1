"""`soar validate`: every problem in every playbook, as `file:line:col: message`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from soar.connectors.catalog import load_catalog
from soar.connectors.registry import load_registry
from soar.playbook.catalog import find_playbook_files, validate_files


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="text for people, json for editors and CI.",
)
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Also know the actions in this file (the output of `soar connectors --json` on a "
    "machine that has the connectors). Repeatable.",
)
def validate(paths: tuple[Path, ...], output_format: str, catalogs: tuple[Path, ...]) -> None:
    """Check playbooks: YAML, schema, actions and inputs, references, cycles, durations.

    PATHS are playbook files, or directories searched for playbook.yaml and *.playbook.yaml.
    Exit status: 0 when clean, 1 when there is any problem, 2 for a bad catalog.
    """
    registry = load_registry()
    for catalog in catalogs:
        registry.add_catalog(load_catalog(catalog))
    files, problems = find_playbook_files(paths)
    results = validate_files(files, registry=registry)
    total = len(problems) + sum(len(r.diagnostics) for r in results)
    if output_format == "json":
        document = {
            "ok": total == 0,
            "problems": total,
            "files": [
                {
                    "file": r.file,
                    "ok": r.ok,
                    "playbook": (
                        {"id": r.playbook.id, "version": r.playbook.version} if r.playbook else None
                    ),
                    "diagnostics": [_as_json(d) for d in r.diagnostics],
                }
                for r in results
            ],
            "errors": [_as_json(d) for d in problems],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for problem in problems:
            click.echo(str(problem))
        for result in results:
            for diagnostic in result.diagnostics:
                click.echo(str(diagnostic))
        bad = sum(1 for r in results if not r.ok)
        summary = (
            f"{len(results)} playbook file(s) checked, {bad} with problems, {total} problem(s)"
        )
        click.echo(summary, err=True)
    if registry.broken:
        for name, reason in registry.broken.items():
            click.echo(f"warning: connector {name!r} failed to load: {reason}", err=True)
    raise SystemExit(0 if total == 0 else 1)


def _as_json(diagnostic: object) -> dict[str, object]:
    return {
        "file": getattr(diagnostic, "file", ""),
        "line": getattr(diagnostic, "line", 1),
        "col": getattr(diagnostic, "col", 1),
        "message": getattr(diagnostic, "message", ""),
        "code": getattr(diagnostic, "code", ""),
    }
