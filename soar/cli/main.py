"""The `soar` command: one group, one module per command group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from soar import __version__
from soar.cli.alert import alert
from soar.cli.audit import audit
from soar.cli.bench import bench
from soar.cli.connectors import connectors
from soar.cli.keys import keys
from soar.cli.lab import lab
from soar.cli.playbooks import playbooks
from soar.cli.run import run_command
from soar.cli.runs import runs
from soar.cli.secrets import secrets
from soar.cli.serve import serve_command
from soar.cli.test import cases_command
from soar.cli.tokens import tokens
from soar.cli.validate import validate
from soar.cli.worker import worker_command
from soar.config import CONFIG_ENV
from soar.errors import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soar")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Settings file (TOML; default ${CONFIG_ENV}, else ./soar.toml when present).",
)
def cli(config: Path | None) -> None:
    """soar: security orchestration, automation and response."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)


cli.add_command(validate)
cli.add_command(playbooks)
cli.add_command(alert)
cli.add_command(connectors)
cli.add_command(lab)
cli.add_command(serve_command)
cli.add_command(tokens)
cli.add_command(bench)
cli.add_command(run_command)
cli.add_command(runs)
cli.add_command(cases_command)
cli.add_command(audit)
cli.add_command(keys)
cli.add_command(secrets)
cli.add_command(worker_command)


def main() -> None:
    """The console script: settings problems are one line on stderr and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
