"""`soar bench`: measured figures, printed beside the physical limits of the same machine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from soar.engine.benchmark import EngineFigures, measure, scratch_dir
from soar.store import MemoryStore, open_store
from soar.store.probe import RawLimits, raw_sqlite_limits


@click.group()
def bench() -> None:
    """Benchmarks (figures, not pass/fail)."""


@bench.command("engine")
@click.option("--runs", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
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
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
def engine_command(
    runs: int, warmup: int, concurrency: int, directory: Path | None, as_json: bool
) -> None:
    """N runs of a four-step no-op playbook on the durable SQLite store."""
    result = asyncio.run(_bench(runs, warmup, concurrency, directory))
    durable, memory, raw = result
    rows = [
        ("durable SQLite store", durable),
        ("memory store (interpreter only)", memory),
    ]
    click.echo(f"{'':<34}{'runs/s':>10}{'steps/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for label, figures in rows:
        click.echo(
            f"{label:<34}{figures.runs_per_s:>10,.0f}{figures.steps_per_s:>10,.0f}{figures.p50_ms:>9.2f}{figures.p99_ms:>9.2f}"
        )
    per_step_us = 1e6 / memory.steps_per_s
    click.echo(f"\ninterpreter overhead: {per_step_us:,.0f} µs per step (memory store)")
    click.echo(
        f"raw SQLite on this disk: {raw.commits_per_s:,.0f} durable commits/s, "
        f"{raw.rows_per_s:,.0f} rows/s"
    )
    transitions = durable.runs_per_s * 10  # run start + 4 x (started, succeeded) + finish
    click.echo(
        f"soar: {transitions:,.0f} durable transitions/s = "
        f"{transitions / raw.rows_per_s:.2f} of the raw row rate; "
        f"{durable.runs_per_s / raw.commits_per_s:.2f} runs per raw durable commit"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenario": "engine",
                    "runs": durable.runs,
                    "concurrency": concurrency,
                    "warmup": warmup,
                    "runs_per_s": round(durable.runs_per_s, 1),
                    "steps_per_s": round(durable.steps_per_s, 1),
                    "p50_ms": round(durable.p50_ms, 3),
                    "p99_ms": round(durable.p99_ms, 3),
                    "raw_commits_per_s": round(raw.commits_per_s, 1),
                    "raw_rows_per_s": round(raw.rows_per_s, 1),
                    "memory_runs_per_s": round(memory.runs_per_s, 1),
                    "interpreter_us_per_step": round(per_step_us, 1),
                }
            )
        )


async def _bench(
    runs: int, warmup: int, concurrency: int, directory: Path | None
) -> tuple[EngineFigures, EngineFigures, RawLimits]:
    with scratch_dir(directory) as scratch:
        raw = await raw_sqlite_limits(Path(scratch), seconds=1.0)
        async with open_store(f"sqlite:///{scratch}/bench.db") as store:
            durable = await measure(store, runs=runs, concurrency=concurrency, warmup=warmup)
    memory = await measure(MemoryStore(), runs=runs, concurrency=concurrency, warmup=warmup)
    return durable, memory, raw
