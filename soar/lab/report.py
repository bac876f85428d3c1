"""What the lab prints about itself: where everything is once it is up, and the summary at the
end (per run, what the test servers received, and one line a program can read)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from soar.lab.progress import Progress, short
from soar.lab.servers import Wiring
from soar.models.run import RunStatus

__all__ = ["Started", "print_banner", "print_summary"]

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Started:
    """What the lab brought up."""

    directory: Path
    broker: str | None
    """the broker's bootstrap address, or None without one"""
    topic: str
    wiring: Wiring
    playbooks: list[str]
    dry: list[str]
    """the playbooks whose runs are dry runs here"""
    url: str
    token: str
    token_file: Path
    rate: float
    once: bool


def print_banner(say: Say, lab: Started) -> None:
    """Where each part is, the console's URL and the admin token, and what to do first."""
    if lab.broker is not None:
        say(f"  broker      tansu on {lab.broker}, topic {lab.topic}")
    for what, where in lab.wiring.servers:
        say(f"  server      {what}: {where}")
    for connector, why in sorted(lab.wiring.offline.items()):
        runs = f"runs of {', '.join(lab.dry)} are" if lab.dry else "runs calling it would be"
        say(
            click.style(f"  no server   {connector}: {why}", fg="yellow")
            + f"; {runs} dry runs (planned, not carried out)"
        )
    say(f"  store       {lab.directory / 'soar.db'} (audit log signed every 10 s)")
    processes = lab.wiring.processes
    say("  processes   " + (", ".join(f"{k} {v}" for k, v in processes.items()) or "none"))
    say(f"  playbooks   {', '.join(lab.playbooks)}")
    say("")
    say(click.style("  console     ", bold=True) + click.style(f"{lab.url}/console/", fg="cyan"))
    say(click.style("  admin token ", bold=True) + lab.token + f"  (also in {lab.token_file})")
    say(
        "  Open the console, paste the token, then watch Runs; approvals wait under "
        "Approvals, and Audit verifies the signed log."
    )
    mode = "each sample once" if lab.once else "until Ctrl-C"
    say(f"  Sending the samples at {lab.rate:g}/s, {mode}.\n")


def print_summary(say: Say, progress: Progress, wiring: Wiring, *, every_run: bool) -> int:
    """The summary; returns how many runs failed or were aborted."""
    say(click.style("\nSummary", bold=True))
    runs = list(progress.runs.values())
    if every_run:
        for view in runs:
            dry = " (dry run)" if view.dry_run else ""
            error = f": {view.error}" if view.error else ""
            say(
                f"  run {short(view.id)} {view.playbook}{dry} on {view.title[:50]!r}: "
                f"{view.outcome}{error}"
            )
    effects = wiring.effects()
    if effects:
        say(f"  the test servers received: {', '.join(effects)}")
    counts = progress.counts()
    failed = sum(1 for v in runs if v.status in (RunStatus.FAILED, RunStatus.ABORTED))
    settled = sum(1 for v in runs if v.settled)
    say(
        f"lab summary: alerts={len(progress.accepted)} runs={len(runs)} "
        f"completed={counts['completed']} waiting_for_approval={counts['waiting for approval']} "
        f"other={len(runs) - settled} failed={failed}"
    )
    return failed
