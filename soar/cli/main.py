"""The `soar` command: one group, one module per command group."""

from __future__ import annotations

import click

from soar import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soar")
def main() -> None:
    """soar: security orchestration, automation and response."""
