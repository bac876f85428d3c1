"""`soar playbooks`: a playbook's saved versions and their rollout, on the configured store
(docs/playbooks.md, "Versions and rollout"). Workers follow a change within seconds; every
change is audited with the CLI's actor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from soar.cli.auditing import cli_actor
from soar.config import load_settings
from soar.engine.compare import Comparison, compare
from soar.engine.evidence import Evidence
from soar.engine.rollout import FULL, Mode
from soar.engine.versions import RolloutRefused, roll_back, roll_out, version_states
from soar.store import Rollout, Store, open_store

_T = TypeVar("_T")


@click.group("playbooks")
def playbooks() -> None:
    """List a playbook's versions; roll one out, promote it, roll it back."""


def _on_store(work: Callable[[Store, Evidence], Awaitable[_T]]) -> _T:
    settings = load_settings()

    async def run() -> _T:
        async with open_store(settings.store) as store:
            return await work(store, Evidence(enabled=settings.audit.enabled))

    try:
        return asyncio.run(run())
    except RolloutRefused as exc:
        raise click.ClickException(str(exc)) from None


@playbooks.command("versions")
@click.argument("playbook_id")
@click.option("--json", "as_json", is_flag=True)
def versions(playbook_id: str, as_json: bool) -> None:
    """Every saved version of PLAYBOOK_ID, oldest first, with its share and mode."""
    states = _on_store(lambda store, _: version_states(store, playbook_id))
    if not states:
        raise click.ClickException(f"no saved version of {playbook_id}")
    rows = [
        {
            "version": s.version.version,
            "digest": s.version.digest,
            "author": s.version.author,
            "created_at": s.version.created_at.isoformat(),
            "share": s.share,
            "mode": s.mode,
            "stable": s.stable,
        }
        for s in states
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "stable" if row["stable"] else f"{row['share']:>3}% {row['mode']}"
        click.echo(
            f"v{row['version']:<4} {state:<13} {row['author']:<32} {row['created_at']}  "
            f"{str(row['digest'])[:19]}"
        )


@playbooks.command("rollout")
@click.argument("playbook_id")
@click.option("--version", "version", type=int, required=True, help="A saved version.")
@click.option(
    "--share", type=click.IntRange(0, 100), required=True, help="Percent of matching alerts."
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=Mode.LIVE.value,
    show_default=True,
    help="dry_run: runs beside the live choice, doing nothing.",
)
def rollout(playbook_id: str, version: int, share: int, mode: str) -> None:
    """Give VERSION of PLAYBOOK_ID a share of its matching alerts (live at 100 promotes it)."""
    records = _on_store(
        lambda store, evidence: roll_out(
            store,
            evidence,
            playbook_id=playbook_id,
            version=version,
            share=share,
            mode=mode,
            actor=cli_actor(),
            at=datetime.now(UTC),
        )
    )
    _echo(records)


@playbooks.command("promote")
@click.argument("playbook_id")
@click.option("--version", "version", type=int, required=True, help="A saved version.")
def promote(playbook_id: str, version: int) -> None:
    """Make VERSION the stable version of PLAYBOOK_ID (live at 100; the previous one at 0)."""
    records = _on_store(
        lambda store, evidence: roll_out(
            store,
            evidence,
            playbook_id=playbook_id,
            version=version,
            share=FULL,
            mode=Mode.LIVE,
            actor=cli_actor(),
            at=datetime.now(UTC),
        )
    )
    _echo(records)


@playbooks.command("rollback")
@click.argument("playbook_id")
@click.option("--version", "version", type=int, default=None, help="Withdraw this one only.")
def rollback(playbook_id: str, version: int | None) -> None:
    """Withdraw PLAYBOOK_ID's canaries (share 0); with none, promote the previous stable version
    again. With --version, withdraw that version alone."""
    records = _on_store(
        lambda store, evidence: roll_back(
            store,
            evidence,
            playbook_id=playbook_id,
            actor=cli_actor(),
            at=datetime.now(UTC),
            version=version,
        )
    )
    _echo(records)


def _echo(records: list[Rollout]) -> None:
    for record in records:
        click.echo(f"{record.playbook_id} v{record.version}: {record.share}% {record.mode}")


@playbooks.command("compare")
@click.argument("playbook_id")
@click.option("--since", type=click.DateTime(), default=None, help="Only runs started since (UTC).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def compare_command(playbook_id: str, since: datetime | None, limit: int, as_json: bool) -> None:
    """How each version did: runs, success rate, p50/p99 duration, effects, and per step."""
    start = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since

    async def read(store: Store, _: Evidence) -> Comparison:
        return await compare(store, playbook_id, since=start, limit=limit)

    found = _on_store(read)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return
    click.echo(f"{playbook_id}: {found.runs_read} run(s) read")
    for v in found.versions:
        rate = "-" if v.success_rate is None else f"{v.success_rate:.1%}"
        click.echo(
            f"  v{v.version}: {v.runs} run(s) ({v.dry_runs} dry), {v.completed} completed, "
            f"{v.failed} failed, {v.aborted} aborted, {v.unfinished} unfinished; success {rate}; "
            f"p50 {_secs(v.p50_seconds)}, p99 {_secs(v.p99_seconds)}; {v.effects} effect(s)"
        )
        for s in v.steps:
            step_rate = "-" if s.success_rate is None else f"{s.success_rate:.1%}"
            click.echo(
                f"      {s.step:<28} {s.instances:>5} run {s.succeeded:>5} ok {s.failed:>4} failed"
                f" {s.skipped:>4} skipped {step_rate:>7} p50 {_ms(s.p50_ms)} p99 {_ms(s.p99_ms)}"
            )


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value}ms"
