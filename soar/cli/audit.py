"""`soar audit`: export, verify, query and prove the audit log; sign a checkpoint now."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click

from soar.audit.export import export_lines
from soar.audit.keys import Keyring, load_public_keys
from soar.audit.proofs import (
    check_consistency,
    check_inclusion,
    prove_consistency,
    prove_inclusion,
)
from soar.audit.verify import VerifyReport, verify_export
from soar.cli.auditing import checkpointer_for
from soar.config import load_settings
from soar.errors import ChainBroken
from soar.models.audit import AuditFilter, AuditRecord
from soar.store import open_store


@click.group()
def audit() -> None:
    """The tamper-evident audit log (docs/audit.md)."""


@audit.command("export")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here instead of standard output.",
)
def export_command(out: Path | None) -> None:
    """Every record and signed checkpoint as JSON Lines that verify on their own."""

    async def export(stream: TextIO) -> int:
        count = 0
        async with open_store(load_settings().store) as store:
            async for line in export_lines(store):
                stream.write(line + "\n")
                count += 1
        return count

    if out is None:
        asyncio.run(export(sys.stdout))
        return
    with out.open("w", encoding="utf-8") as stream:
        count = asyncio.run(export(stream))
    click.echo(f"{count} lines written to {out}", err=True)


@audit.command("verify")
@click.argument("export", type=click.File("r", encoding="utf-8"))
@click.option(
    "--key",
    "key_files",
    multiple=True,
    required=True,
    type=click.File("r", encoding="utf-8"),
    help="PEM file of public keys (repeatable); `soar keys export` writes one.",
)
@click.option(
    "--checkpoints",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Checkpoint lines published outside the store (the file sink), checked too.",
)
@click.option("--json", "as_json", is_flag=True)
def verify_command(
    export: TextIO, key_files: tuple[TextIO, ...], checkpoints: TextIO | None, as_json: bool
) -> None:
    """Check an exported log with nothing but the file and public keys. Exit status 1 names
    the first bad record and what is wrong with it."""
    keys = {}
    for key_file in key_files:
        keys.update(load_public_keys(key_file.read()))
    if not keys:
        raise click.UsageError("no public key found in the --key files")
    external = checkpoints.read().splitlines() if checkpoints is not None else []
    report = verify_export(export, keys, external=external)
    if as_json:
        click.echo(json.dumps(_report_json(report)))
    elif report.ok:
        click.echo(
            f"ok: {report.records} records, {report.checkpoints} signed checkpoints; "
            f"signed up to tree size {report.last_checkpoint}"
        )
    else:
        problem = report.problem
        assert problem is not None  # noqa: S101
        where = f"record {problem.seq}" if problem.seq is not None else "the log"
        line = f" (line {problem.line})" if problem.line is not None else ""
        click.echo(f"FAILED at {where}{line}: {problem.kind.value}: {problem.message}")
    if not report.ok:
        sys.exit(1)


def _report_json(report: VerifyReport) -> dict[str, object]:
    problem = report.problem
    return {
        "ok": report.ok,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "last_checkpoint": report.last_checkpoint,
        "problem": None
        if problem is None
        else {
            "kind": problem.kind.value,
            "seq": problem.seq,
            "line": problem.line,
            "message": problem.message,
        },
    }


@audit.command("query")
@click.option("--since", type=click.DateTime(), help="From this time (UTC unless it says).")
@click.option("--until", type=click.DateTime(), help="Before this time.")
@click.option("--run", "run_id", help="Records of this run.")
@click.option("--alert", "alert_id", help="Records of this alert.")
@click.option("--actor", help="Who: engine, a person, an API token.")
@click.option("--kind", help="What happened: run.started, step.finished, approval.decided, ...")
@click.option("--action", help="The connector action, e.g. ldap.disable_account.")
@click.option("--target", help="The user, host, ... an action touched.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="JSON Lines of whole records.")
def query_command(
    since: datetime | None,
    until: datetime | None,
    run_id: str | None,
    alert_id: str | None,
    actor: str | None,
    kind: str | None,
    action: str | None,
    target: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Records matching every given filter, oldest first."""
    audit_filter = AuditFilter(
        since=_aware(since),
        until=_aware(until),
        run_id=run_id,
        alert_id=alert_id,
        actor=actor,
        kind=kind,
        action=action,
        target=target,
        limit=limit,
    )

    async def query() -> list[AuditRecord]:
        async with open_store(load_settings().store) as store:
            return await store.query_audit(audit_filter)

    found = asyncio.run(query())
    if as_json:
        for record in found:
            click.echo(record.line())
        return
    click.echo(f"{'seq':>6}  {'time (UTC)':<26}  {'kind':<20} {'actor':<16} {'step':<18} detail")
    for record in found:
        body = json.loads(record.event.body)
        detail = " ".join(
            f"{k}={body[k]}"
            for k in ("action", "outcome", "status", "approved", "error")
            if body.get(k) is not None
        )
        if record.event.target:
            detail += f" target={record.event.target}"
        click.echo(
            f"{record.seq:>6}  {body.get('time', ''):<26}  {record.event.kind.value:<20} "
            f"{record.event.actor:<16} {record.event.step or '':<18} {detail}"
        )
    click.echo(f"{len(found)} records", err=True)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@audit.command("prove")
@click.argument("export", type=click.File("r", encoding="utf-8"))
@click.option("--seq", type=click.IntRange(1), help="Inclusion proof of this record.")
@click.option("--tree-size", type=click.IntRange(1), help="...in the tree of this size.")
@click.option("--old", "old_size", type=click.IntRange(1), help="Consistency proof from...")
@click.option("--new", "new_size", type=click.IntRange(1), help="...to this tree size.")
def prove_command(
    export: TextIO,
    seq: int | None,
    tree_size: int | None,
    old_size: int | None,
    new_size: int | None,
) -> None:
    """An inclusion proof (`--seq`) or a consistency proof (`--old --new`), as JSON that
    `soar audit check-proof` (or any RFC 9162 checker) verifies offline."""
    lines = export.read().splitlines()
    try:
        if seq is not None and old_size is None:
            document = prove_inclusion(lines, seq, tree_size=tree_size)
        elif old_size is not None and new_size is not None and seq is None:
            document = prove_consistency(lines, old_size, new_size)
        else:
            raise click.UsageError("give --seq [--tree-size], or --old and --new")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(document, indent=2))


@audit.command("check-proof")
@click.argument("proof", type=click.File("r", encoding="utf-8"))
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=click.File("r", encoding="utf-8"),
    help="PEM public keys: also check the signed checkpoints the proof carries.",
)
def check_proof_command(proof: TextIO, key_files: tuple[TextIO, ...]) -> None:
    """Check a proof from `soar audit prove`. Exit status 1 when it does not hold."""
    try:
        document = json.load(proof)
    except ValueError as exc:
        raise click.ClickException(f"not a proof document: {exc}") from None
    keys = {}
    for key_file in key_files:
        keys.update(load_public_keys(key_file.read()))
    check = check_consistency if "old_size" in document else check_inclusion
    problem = check(document, keys or None)
    if problem is not None:
        click.echo(f"FAILED: {problem}")
        sys.exit(1)
    click.echo("ok: the proof holds")


@audit.command("checkpoint")
def checkpoint_command() -> None:
    """Sign a checkpoint of the log now, and publish it to the configured sinks."""

    async def sign() -> str:
        settings = load_settings()
        async with open_store(settings.store) as store:
            checkpointer = checkpointer_for(settings, store, Keyring.open(settings.audit.keys))
            stored = await checkpointer.checkpoint(force=True)
            assert stored is not None  # noqa: S101
            return f"signed tree size {stored.tree_size} with key {stored.key_id}"

    try:
        click.echo(asyncio.run(sign()))
    except ChainBroken as exc:
        raise click.ClickException(f"not signing, the log was altered: {exc}") from None
