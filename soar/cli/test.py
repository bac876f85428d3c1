"""`soar test`: run the test cases beside each playbook; non-zero exit when any fails."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import click
from pydantic import JsonValue

from soar.config import load_settings
from soar.connectors.catalog import load_catalog
from soar.connectors.registry import Registry, load_registry
from soar.engine.playbook_tests import Outcome, load_case, run_case
from soar.errors import AlertRejected
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Action catalog for connectors not installed here.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every result.")
def cases_command(paths: tuple[Path, ...], catalogs: tuple[Path, ...], as_json: bool) -> None:
    """Run playbook test cases (PATHS: playbooks or directories; default: the playbooks dir).

    Each playbook's cases are the YAML files in a `tests/` directory beside it.
    """
    logging.getLogger("soar.action").addHandler(logging.NullHandler())  # core.log is not output
    logging.getLogger("soar.action").propagate = False
    settings = load_settings()
    registry = load_registry()
    for catalog in catalogs:
        registry.add_catalog(load_catalog(catalog))
    files, problems = find_playbook_files(list(paths) or [settings.playbooks])
    results = validate_files(files, registry=registry)
    loaded = [r.loaded for r in results if r.loaded is not None]
    outcomes: list[Outcome] = []
    for problem in problems:
        outcomes.append(
            Outcome(file=Path(problem.file), name="(files)", problems=[problem.message])
        )
    for result in results:
        cases = sorted((Path(result.file).parent / "tests").glob("*.y*ml"))
        if result.loaded is None:
            if cases:
                outcomes.append(
                    Outcome(
                        file=Path(result.file),
                        name="(playbook)",
                        problems=[str(d) for d in result.diagnostics],
                    )
                )
            continue
        for case_file in cases:
            outcome = asyncio.run(
                _one(case_file, result.loaded, loaded, registry, settings.directory)
            )
            if outcome is not None:
                outcomes.append(outcome)
    failed = [o for o in outcomes if not o.passed]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "passed": len(outcomes) - len(failed),
                    "failed": len(failed),
                    "cases": [
                        {
                            "file": str(o.file),
                            "name": o.name,
                            "passed": o.passed,
                            "problems": o.problems,
                            "calls": o.calls,
                        }
                        for o in outcomes
                    ],
                },
                indent=2,
            )
        )
    else:
        for outcome in outcomes:
            mark = (
                click.style("PASS", fg="green")
                if outcome.passed
                else click.style("FAIL", fg="red", bold=True)
            )
            click.echo(f"{mark} {outcome.file}: {outcome.name}")
            for line in outcome.problems:
                click.echo(f"       {line}")
        click.echo(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed", err=True)
    raise SystemExit(1 if failed or not outcomes else 0)


async def _one(
    case_file: Path,
    loaded: LoadedPlaybook,
    library: list[LoadedPlaybook],
    registry: Registry,
    directory: Mapping[str, JsonValue],
) -> Outcome | None:
    try:
        case = load_case(case_file)
    except ValueError as exc:
        return Outcome(file=case_file, name="(case file)", problems=[str(exc)])
    if case.playbook is not None and case.playbook != loaded.playbook.id:
        return None
    alert: Alert | None = None
    if case.alert is not None:
        try:
            data = (
                (case_file.parent / case.alert).read_bytes()
                if isinstance(case.alert, str)
                else json.dumps(case.alert).encode()
            )
            alert = normalize(data)[0]
        except (AlertRejected, OSError) as exc:
            return Outcome(file=case_file, name=case.name, problems=[f"alert: {exc}"])
    others = [p for p in library if p.playbook.id != loaded.playbook.id]
    return await run_case(
        case, case_file, loaded, registry, alert=alert, others=others, directory=directory
    )
