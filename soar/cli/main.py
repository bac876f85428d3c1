"""The `soar` command: one group, one module per command group."""

from __future__ import annotations

import click

from soar import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soar")
def main() -> None:
    """soar: security orchestration, automation and response."""


def _register() -> None:
    from soar.cli.connectors import connectors
    from soar.cli.lab import lab
    from soar.cli.validate import validate

    main.add_command(validate)
    main.add_command(connectors)
    main.add_command(lab)


_register()


from soar.cli.alert import alert  # noqa: E402 - registered after `main` exists

main.add_command(alert)
