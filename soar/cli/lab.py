"""`soar lab`: the whole system on this machine, on loopback, with embedded defaults
(docs/lab.md). The work is in `soar.lab`; this is its command line."""

from __future__ import annotations

from pathlib import Path

import click

from soar.connectors.registry import load_registry
from soar.lab import LabOptions, check_shipped, default_playbooks_dir, run_lab


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Work directory (new or empty; kept afterwards). Default: a temporary one, removed.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="API and console port (0: a free one)."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Sample messages sent per second.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Send each sample once, wait until its runs end or wait for people, print a summary "
    "and exit (non-zero if a run failed or they did not settle in --timeout).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="With --once: seconds to wait for the runs to settle.",
)
@click.option(
    "--resolve-after",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds after a run starts waiting for its alert's resolution until the lab sends it.",
)
@click.option(
    "--no-ldap",
    is_flag=True,
    help="Start no directory server even where slapd is installed (LDAP runs become dry runs).",
)
@click.option(
    "--fire-cron",
    is_flag=True,
    help="Start every cron playbook once right after start (the monthly server check, for the "
    "demo) instead of waiting for its schedule.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Only check what ships (playbooks validate, samples normalise) and exit; start nothing.",
)
@click.option(
    "--playbooks",
    "playbooks_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Playbooks, each with sample alerts in <id>/alerts/ (default: the shipped ones).",
)
def lab(
    directory: Path | None,
    port: int,
    rate: float,
    once: bool,
    timeout: float,
    resolve_after: float,
    no_ldap: bool,
    fire_cron: bool,
    check: bool,
    playbooks_dir: Path | None,
) -> None:
    """Run the whole system on this machine: broker, test servers, store, engine, API and
    console, and a producer of the sample alerts. Ctrl-C stops it all."""
    root = (playbooks_dir or default_playbooks_dir()).resolve()
    if check:
        raise SystemExit(0 if check_shipped(root, load_registry(), click.echo).ok else 1)
    options = LabOptions(
        playbooks=root,
        directory=directory,
        port=port,
        rate=rate,
        once=once,
        timeout=timeout,
        resolve_after=resolve_after,
        ldap=not no_ldap,
        fire_cron=fire_cron,
    )
    raise SystemExit(run_lab(options, click.echo))
